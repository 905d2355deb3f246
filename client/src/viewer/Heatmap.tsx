import { useState } from "react";

export interface HeatmapProps {
  tokens: readonly string[];
  /** Raw activations, shown on hover. */
  activations: readonly number[];
  /** Activations scaled by the server (1 = the node's max activation); sets the colour. */
  normalized: readonly number[];
  label?: string;
}

/** Positive activations shade green, negative ones red; alpha is |normalized| clipped to [0, 1]. */
export function tokenBackground(normalized: number): string {
  const alpha = Math.min(1, Math.abs(normalized));
  if (!Number.isFinite(alpha) || alpha === 0) return "transparent";
  return normalized > 0 ? `rgba(22, 163, 74, ${alpha.toFixed(3)})` : `rgba(220, 38, 38, ${alpha.toFixed(3)})`;
}

/** Whitespace made visible, so a record of spaces and newlines still shows its tokens. */
function displayToken(token: string): string {
  return token.replace(/\n/g, "↵").replace(/\t/g, "⇥");
}

/** One sequence as a row of tokens coloured by activation; hovering a token shows its value. */
export function Heatmap({ tokens, activations, normalized, label }: HeatmapProps) {
  const [hovered, setHovered] = useState<number | null>(null);
  const hoveredToken = hovered === null ? undefined : tokens[hovered];
  return (
    <div className="heatmap" data-testid="heatmap" aria-label={label}>
      <div className="heatmap-tokens">
        {tokens.map((token, i) => (
          <span
            key={i}
            className="token"
            data-testid="token"
            data-token={token}
            data-activation={activations[i]}
            style={{ background: tokenBackground(normalized[i] ?? 0) }}
            onMouseEnter={() => setHovered(i)}
            onMouseLeave={() => setHovered((h) => (h === i ? null : h))}
          >
            {displayToken(token)}
            {hovered === i && hoveredToken !== undefined && (
              <span className="token-tooltip" role="tooltip" data-testid="token-tooltip">
                <code>{JSON.stringify(hoveredToken)}</code> activation {formatNumber(activations[i])} (
                {formatNumber(normalized[i])} of max)
              </span>
            )}
          </span>
        ))}
      </div>
    </div>
  );
}

export function formatNumber(value: number | null | undefined, digits = 3): string {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  return value.toFixed(digits);
}
