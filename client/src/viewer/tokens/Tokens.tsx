import { useState } from "react";

/**
 * Token rendering shared by every page: a row of tokens, each coloured by a value in [-1, 1] (green
 * positive, red negative), with its raw value on hover. Pages choose the values (a node's activations,
 * attention to a key, a simulation); the prompt page of the debugger will use the same strip.
 */

/** Positive values shade green, negative ones red; alpha is |normalized| clipped to [0, 1]. */
export function tokenBackground(normalized: number): string {
  const alpha = Math.min(1, Math.abs(normalized));
  if (!Number.isFinite(alpha) || alpha === 0) return "transparent";
  return normalized > 0 ? `rgba(22, 163, 74, ${alpha.toFixed(3)})` : `rgba(220, 38, 38, ${alpha.toFixed(3)})`;
}

/** Whitespace made visible, so a record of spaces and newlines still shows its tokens. */
export function displayToken(token: string): string {
  return token.replace(/\n/g, "↵").replace(/\t/g, "⇥");
}

export function formatNumber(value: number | null | undefined, digits = 3): string {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  return value.toFixed(digits);
}

/** An enum member as prose: `MLP_NEURON` -> "mlp neuron". */
export function enumLabel(value: string): string {
  return value.toLowerCase().replace(/_/g, " ");
}

export function argmax(values: readonly number[]): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if ((values[i] ?? -Infinity) > (values[best] ?? -Infinity)) best = i;
  return best;
}

/** Tokens shown around the max token of a record: more context before it (what the model has read). */
export const CONTEXT_BEFORE = 16;
export const CONTEXT_AFTER = 8;

/** `[start, end)` of the window centred on `centre`, widened on one side when the other hits an edge. */
export function centredWindow(length: number, centre: number): [number, number] {
  const size = CONTEXT_BEFORE + CONTEXT_AFTER + 1;
  if (length <= size) return [0, length];
  let start = Math.max(0, centre - CONTEXT_BEFORE);
  const end = Math.min(length, start + size);
  start = Math.max(0, end - size);
  return [start, end];
}

export interface TokenStripProps {
  tokens: readonly string[];
  /** Raw values, shown on hover (and in `data-activation`). */
  values: readonly number[];
  /** Values scaled to [-1, 1] for the colour (1 = the node's max activation). */
  normalized: readonly number[];
  /** Only tokens [start, end) are shown; elided ones are marked with an ellipsis. */
  window?: [number, number];
  /** Tokens outlined (the max token; a selected query). */
  marked?: ReadonlySet<number>;
  /** Clicking a token picks it (attention heads: the query token). */
  onPick?: (index: number) => void;
  valueLabel?: string;
  testId?: string;
}

/** One sequence as a row of coloured tokens; hovering a token shows its value. */
export function TokenStrip({
  tokens,
  values,
  normalized,
  window,
  marked,
  onPick,
  valueLabel = "activation",
  testId = "heatmap",
}: TokenStripProps) {
  const [hovered, setHovered] = useState<number | null>(null);
  const [start, end] = window ?? [0, tokens.length];
  const shown: number[] = [];
  for (let i = start; i < end; i++) shown.push(i);
  return (
    <div className="heatmap" data-testid={testId} data-start={start} data-end={end}>
      <div className="heatmap-tokens">
        {start > 0 && <span className="elided" title={`${start} tokens before`}>… </span>}
        {shown.map((i) => {
          const token = tokens[i] ?? "";
          const classes = ["token"];
          if (marked?.has(i)) classes.push("marked");
          if (onPick) classes.push("pickable");
          return (
            <span
              key={i}
              className={classes.join(" ")}
              data-testid="token"
              data-index={i}
              data-token={token}
              data-activation={values[i]}
              style={{ background: tokenBackground(normalized[i] ?? 0) }}
              onMouseEnter={() => setHovered(i)}
              onMouseLeave={() => setHovered((h) => (h === i ? null : h))}
              onClick={onPick ? () => onPick(i) : undefined}
            >
              {displayToken(token)}
              {hovered === i && (
                <span className="token-tooltip" role="tooltip" data-testid="token-tooltip">
                  <code>{JSON.stringify(token)}</code> {valueLabel} {formatNumber(values[i])} (
                  {formatNumber(normalized[i])} of max)
                </span>
              )}
            </span>
          );
        })}
        {end < tokens.length && (
          <span className="elided" title={`${tokens.length - end} tokens after`}>
            {" "}
            …
          </span>
        )}
      </div>
    </div>
  );
}
