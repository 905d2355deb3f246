import type { NodeTableKind } from "../../generated/hooks";
import { linkProps, navigate, nodeRoute } from "../routing";
import { displayToken, enumLabel, formatNumber } from "../tokens/Tokens";
import { COLUMNS, type Column, type PromptRoute, sameNodeAt } from "./promptRoute";

export type Values = Record<Column, number>;

/** One node-table row from either query: `values` (one condition), or `left`/`right`/`difference` (compare). */
export interface TableRow {
  kind: NodeTableKind;
  nodeId: string | null;
  token: number;
  keyToken: number | null;
  values: Values | null;
  left: Values | null;
  right: Values | null;
  difference: Values | null;
}

const LABELS: Record<Column, string> = {
  activation: "activation",
  writeNorm: "write norm",
  actTimesGrad: "act × grad",
  directEffect: "direct effect",
};
const SIDES = ["left", "right", "difference"] as const;

function sortKey(row: TableRow, column: Column): number {
  const v = (row.difference ?? row.values)?.[column] ?? 0;
  return Math.abs(v);
}

/** A node id without its model (every row shares it): `attention_head/1/0`. */
function shortId(id: string): string {
  return id.slice(id.indexOf("/") + 1);
}

function tokenLabel(tokens: readonly string[], index: number): string {
  return `${index} ${JSON.stringify(displayToken(tokens[index] ?? "?"))}`;
}

/**
 * TDB's node table: a row per node at a token (a head per (query, key) pair), the four columns, and per
 * row a click to ablate it, patch it from the `from` prompt, or trace from it — each a new URL, so one
 * new query. Sorted by the URL's column (largest magnitude first).
 */
export function NodeTable({ route, rows, tokens }: { route: PromptRoute; rows: TableRow[]; tokens: readonly string[] }) {
  const compare = route.compare;
  const sorted = [...rows].sort((a, b) => sortKey(b, route.sort) - sortKey(a, route.sort));
  const maxAbs: Record<Column, number> = { activation: 0, writeNorm: 0, actTimesGrad: 0, directEffect: 0 };
  for (const row of rows) {
    for (const c of COLUMNS) {
      for (const v of compare ? [row.left, row.right] : [row.values]) maxAbs[c] = Math.max(maxAbs[c], Math.abs(v?.[c] ?? 0));
    }
  }
  const toggle = <T,>(list: T[], item: T, same: (a: T, b: T) => boolean) =>
    list.some((x) => same(x, item)) ? list.filter((x) => !same(x, item)) : [...list, item];
  return (
    <div className="table-scroll">
      <table className="nodes prompt-table" data-testid="prompt-table" data-compare={compare ? "1" : "0"} data-rows={rows.length}>
        <thead>
          <tr>
            <th rowSpan={compare ? 2 : 1}>kind</th>
            <th rowSpan={compare ? 2 : 1}>node</th>
            <th rowSpan={compare ? 2 : 1}>token (head: query → key)</th>
            {COLUMNS.map((c) => (
              <th key={c} colSpan={compare ? 3 : 1} className={c === route.sort ? "sorted" : ""}>
                <button
                  type="button"
                  className="link-button"
                  data-testid={`sort-${c}`}
                  onClick={() => navigate({ ...route, sort: c }, true)}
                  title={compare ? "sort by |right − left|" : "sort by magnitude"}
                >
                  {LABELS[c]}
                  {c === route.sort ? " ▾" : ""}
                </button>
              </th>
            ))}
            <th rowSpan={compare ? 2 : 1}>click to</th>
          </tr>
          {compare && (
            <tr>
              {COLUMNS.flatMap((c) =>
                SIDES.map((side) => (
                  <th key={`${c}-${side}`} className="side">
                    {side === "difference" ? "Δ" : side}
                  </th>
                )),
              )}
            </tr>
          )}
        </thead>
        <tbody>
          {sorted.map((row) => {
            const at = row.nodeId === null ? null : { node: row.nodeId, token: row.token };
            const ablated = at !== null && route.ablations.some((a) => sameNodeAt(a, at));
            const patched = at !== null && route.patches.some((p) => sameNodeAt(p, at));
            const traced =
              route.trace !== null &&
              route.trace.node === row.nodeId &&
              route.trace.token === row.token &&
              route.trace.keyToken === row.keyToken;
            const key = `${row.kind}/${row.nodeId ?? ""}/${row.token}/${row.keyToken ?? ""}`;
            return (
              <tr
                key={key}
                data-testid="prompt-row"
                data-kind={row.kind}
                data-node-id={row.nodeId ?? ""}
                data-token={row.token}
                data-key-token={row.keyToken ?? ""}
                className={[ablated || patched ? "ablated" : "", traced ? "traced" : ""].join(" ")}
              >
                <td className="muted">{enumLabel(row.kind)}</td>
                <td>
                  {row.nodeId === null ? (
                    <span className="muted">embedding</span>
                  ) : (
                    <a data-testid="row-node-link" data-node-id={row.nodeId} title={row.nodeId} {...linkProps(nodeRoute(row.nodeId))}>
                      {shortId(row.nodeId)}
                    </a>
                  )}
                </td>
                <td className="token-cell">
                  {tokenLabel(tokens, row.token)}
                  {row.keyToken !== null && ` → ${tokenLabel(tokens, row.keyToken)}`}
                </td>
                {COLUMNS.flatMap((c) =>
                  compare
                    ? SIDES.map((side) => <ValueCell key={`${c}-${side}`} column={c} side={side} value={row[side]?.[c]} scale={maxAbs[c]} />)
                    : [<ValueCell key={c} column={c} side={null} value={row.values?.[c]} scale={maxAbs[c]} />],
                )}
                <td className="actions">
                  {at !== null && (
                    <>
                      <button
                        type="button"
                        data-testid="row-ablate"
                        title={`set ${row.nodeId} to 0 at token ${row.token}${row.keyToken !== null ? " (the query's whole attention row)" : ""}`}
                        onClick={() => navigate({ ...route, ablations: toggle(route.ablations, { ...at, value: 0 }, sameNodeAt) })}
                      >
                        {ablated ? "restore" : "ablate"}
                      </button>
                      <button
                        type="button"
                        data-testid="row-patch"
                        disabled={route.from === null && !patched}
                        title={route.from === null ? "type a 'patch from' prompt first" : `take its value from ${JSON.stringify(route.from)}`}
                        onClick={() => navigate({ ...route, patches: toggle(route.patches, at, sameNodeAt) })}
                      >
                        {patched ? "unpatch" : "patch"}
                      </button>
                      <button
                        type="button"
                        data-testid="row-trace"
                        disabled={traced}
                        title="differentiate this node here instead of the loss"
                        onClick={() =>
                          navigate({ ...route, trace: { node: at.node, token: row.token, keyToken: row.keyToken }, path: null })
                        }
                      >
                        {traced ? "traced" : "trace"}
                      </button>
                    </>
                  )}
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}

/** A number, its bar shaded green (positive) or red (negative) by its share of the column's largest |value|. */
function ValueCell({ column, side, value, scale }: { column: Column; side: string | null; value: number | undefined; scale: number }) {
  const v = value ?? 0;
  const share = scale > 0 ? Math.min(1, Math.abs(v) / scale) : 0;
  const colour = v >= 0 ? "22, 163, 74" : "220, 38, 38";
  return (
    <td
      className={`num${side === "difference" ? " diff" : ""}`}
      data-testid={side === null ? `cell-${column}` : `cell-${column}-${side}`}
      data-value={value}
      style={{ background: side === "difference" || share === 0 ? undefined : `rgba(${colour}, ${(share * 0.35).toFixed(3)})` }}
    >
      {formatNumber(value, 4)}
    </td>
  );
}
