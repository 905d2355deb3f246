import type { RecordFieldsFragment } from "../../generated/hooks";
import { TokenStrip, argmax, centredWindow, formatNumber } from "../tokens/Tokens";

/** A record's per-token view centred on its max token: the window shown and where the max is. */
export function centred(record: { activations: readonly number[] }, full: boolean) {
  const max = argmax(record.activations);
  const window: [number, number] = full ? [0, record.activations.length] : centredWindow(record.activations.length, max);
  return { max, window, maxValue: record.activations[max] ?? 0 };
}

/** Records of a per-token node (neurons, latents): each centred on its max token, the max shown first. */
export function Records({
  title,
  records,
  full,
  testId,
}: {
  title: string;
  records: RecordFieldsFragment[];
  full: boolean;
  testId: string;
}) {
  return (
    <section className="panel" data-testid={testId}>
      <h2>
        {title} <span className="muted">({records.length})</span>
      </h2>
      {records.length === 0 && <div className="muted">none</div>}
      {records.map((r, i) => {
        const { max, window, maxValue } = centred(r, full);
        return (
          <div className="record" key={i} data-testid="record" data-max-index={max}>
            <span className="record-max" data-testid="record-max" title="the record's max activation">
              {formatNumber(maxValue)}
            </span>
            <TokenStrip
              tokens={r.tokens}
              values={r.activations}
              normalized={r.normalizedActivations}
              window={window}
              marked={new Set([max])}
            />
            <span className="provenance">
              {r.provenance.source.toLowerCase()}
              {r.provenance.dataset ? ` · ${r.provenance.dataset}` : ""}
            </span>
          </div>
        );
      })}
    </section>
  );
}
