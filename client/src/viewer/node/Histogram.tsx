import { formatNumber } from "../tokens/Tokens";

export interface Bin {
  lo: number;
  hi: number;
  /** Fraction of sequences whose max falls in [lo, hi]. */
  mass: number;
}

/**
 * Bins of the distribution of per-sequence max activations from the stored quantiles: boundary i holds
 * level q_i of the maxima, so [b_i, b_(i+1)] holds q_(i+1) - q_i of the sequences. The first bin starts at
 * `low` (the smallest max among the stored random sample), the last ends at the node's max activation.
 */
export function quantileBins(boundaries: readonly number[], levels: readonly number[], low: number, high: number): Bin[] {
  const edges = [Math.min(low, boundaries[0] ?? low), ...boundaries, Math.max(high, boundaries.at(-1) ?? high)];
  const cumulative = [0, ...levels, 1];
  const bins: Bin[] = [];
  for (let i = 0; i + 1 < edges.length; i++) {
    bins.push({ lo: edges[i] ?? 0, hi: edges[i + 1] ?? 0, mass: (cumulative[i + 1] ?? 1) - (cumulative[i] ?? 0) });
  }
  return bins;
}

function percent(mass: number): string {
  const p = mass * 100;
  return p >= 10 ? `${p.toFixed(0)}%` : p >= 1 ? `${p.toFixed(1)}%` : `${p.toFixed(2)}%`;
}

/** Tick positions at least 30 px apart (the last one kept), so close boundaries do not overprint. */
function ticks(positions: number[]): number[] {
  const kept: number[] = [];
  for (const p of positions) {
    if (kept.length > 0 && p - (kept.at(-1) ?? 0) < 30) {
      if (p === positions.at(-1)) kept[kept.length - 1] = p;
      continue;
    }
    kept.push(p);
  }
  return kept;
}

const W = 520;
const H = 150;
const PAD = 28;

/** Bars of equal area per unit of mass: height is density (mass / width) on a log scale. */
export function ActivationHistogram({
  boundaries,
  levels,
  low,
  high,
}: {
  boundaries: readonly number[] | null;
  levels: readonly number[] | null;
  low: number;
  high: number;
}) {
  if (boundaries === null || boundaries.length === 0) {
    return <div className="muted" data-testid="histogram-missing">The dataset stores no quantiles for this node.</div>;
  }
  if (levels === null) {
    return (
      <div className="muted" data-testid="histogram-missing">
        Quantile boundaries {boundaries.map((b) => formatNumber(b)).join(", ")} (the dataset does not say at which
        levels, so no histogram is drawn).
      </div>
    );
  }
  const bins = quantileBins(boundaries, levels, low, high);
  const x0 = bins[0]?.lo ?? 0;
  const x1 = bins.at(-1)?.hi ?? 1;
  const span = x1 - x0 || 1;
  const minWidth = span / 200;
  const density = bins.map((b) => b.mass / Math.max(b.hi - b.lo, minWidth));
  const logs = density.map((d) => Math.log10(d));
  const top = Math.max(...logs);
  const bottom = Math.min(...logs) - 0.5;
  const x = (v: number) => PAD + ((v - x0) / span) * (W - 2 * PAD);
  const y = (logD: number) => H - PAD - ((logD - bottom) / (top - bottom || 1)) * (H - 2 * PAD);
  return (
    <figure className="histogram" data-testid="histogram">
      <svg width={W} height={H} role="img" aria-label="distribution of per-sequence max activations">
        {bins.map((b, i) => {
          const left = x(b.lo);
          const width = Math.max(2, x(b.hi) - left);
          const yTop = y(logs[i] ?? bottom);
          return (
            <g key={i} data-testid="histogram-bin" data-lo={b.lo} data-hi={b.hi} data-mass={b.mass}>
              <rect x={left} y={yTop} width={width} height={H - PAD - yTop} className={`bin bin-${i}`}>
                <title>
                  {percent(b.mass)} of sequences have their max in [{formatNumber(b.lo)}, {formatNumber(b.hi)}]
                </title>
              </rect>
              <text x={left + width / 2} y={yTop - 4} textAnchor="middle" className="bin-label">
                {percent(b.mass)}
              </text>
            </g>
          );
        })}
        <line x1={PAD} x2={W - PAD} y1={H - PAD} y2={H - PAD} className="axis" />
        {ticks([x0, ...boundaries, x1].map(x)).map((px, i) => (
          <text key={i} x={px} y={H - PAD + 14} textAnchor="middle" className="tick">
            {formatNumber(x0 + ((px - PAD) / (W - 2 * PAD)) * span, 2)}
          </text>
        ))}
      </svg>
      <figcaption className="muted">
        Per-sequence max activation over the dataset's corpus, from the stored quantiles (levels{" "}
        {levels.map((q) => `${(q * 100).toFixed(1).replace(/\.0$/, "")}%`).join(", ")}); bar height is density on a log
        scale, the label each bar's share of sequences. Left edge: the smallest max in the random sample; right edge:
        the max activation.
      </figcaption>
    </figure>
  );
}
