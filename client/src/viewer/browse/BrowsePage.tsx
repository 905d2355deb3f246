import { useBrowseNodesQuery, useModelInfoQuery, useNodeSummaryQuery } from "../../generated/hooks";
import type { NodeKind } from "../../generated/hooks";
import { ErrorView } from "../ErrorView";
import { NODE_KINDS, type Route, browseRoute, linkProps, navigate, nodeRoute } from "../routing";
import { enumLabel, formatNumber } from "../tokens/Tokens";

type BrowseRoute = Extract<Route, { page: "browse" }>;
export const PAGE_SIZE = 20;

/** One node of the table, asked for on its own: a node without records fails alone, in its row. */
function NodeRow({ id, index }: { id: string; index: number }) {
  const [{ data, error, fetching }] = useNodeSummaryQuery({ variables: { id } });
  const node = data?.node;
  const best = [...(node?.explanations ?? [])].sort((a, b) => (b.score ?? -Infinity) - (a.score ?? -Infinity))[0];
  const code = error?.graphQLErrors[0]?.extensions?.["code"];
  return (
    <tr data-testid="node-row" data-node-id={id}>
      <td className="num">{index}</td>
      <td>
        <a {...linkProps(nodeRoute(id))}>{id}</a>
      </td>
      <td className="num" data-testid="row-max">
        {fetching && !node ? "…" : node ? formatNumber(node.maxActivation) : ""}
      </td>
      <td>
        {error ? (
          <span className="error-code" title={error.message}>
            {typeof code === "string" ? code : "error"}
          </span>
        ) : best ? (
          <>
            {best.text} <span className="muted">({formatNumber(best.score)})</span>
          </>
        ) : (
          <span className="muted">–</span>
        )}
      </td>
    </tr>
  );
}

/** A layer's nodes, a page at a time (the `nodes` connection; its cursors are kept in the URL). */
export function BrowsePage({ route }: { route: BrowseRoute }) {
  const [{ data: info }] = useModelInfoQuery();
  const backwards = route.before !== null;
  const [{ data, error, fetching }] = useBrowseNodesQuery({
    variables: {
      model: route.model,
      kind: route.kind,
      layer: route.layer,
      autoencoder: route.autoencoder,
      first: backwards ? null : PAGE_SIZE,
      after: route.after,
      last: backwards ? PAGE_SIZE : null,
      before: route.before,
    },
  });
  const m = info?.modelInfo;
  const layers = m && m.modelName === route.model && m.nLayers !== null ? m.nLayers : null;
  const page = data?.nodes;
  const go = (patch: Partial<BrowseRoute>) => navigate({ ...route, after: null, before: null, ...patch });
  return (
    <section className="panel" data-testid="browse">
      <h2>
        {route.model} · {enumLabel(route.kind)}
        {route.autoencoder ? ` (${route.autoencoder})` : ""} · layer {route.layer}
        {page ? <span className="muted"> · {page.totalCount} nodes</span> : null}
      </h2>
      <div className="row">
        <label>
          kind{" "}
          <select
            data-testid="browse-kind"
            value={route.kind}
            onChange={(e) => go({ kind: e.target.value as NodeKind, autoencoder: null })}
          >
            {NODE_KINDS.map((k) => (
              <option key={k} value={k}>
                {enumLabel(k)}
              </option>
            ))}
          </select>
        </label>
        <label>
          layer{" "}
          {layers !== null ? (
            <select data-testid="browse-layer" value={route.layer} onChange={(e) => go({ layer: Number(e.target.value) })}>
              {Array.from({ length: layers }, (_, l) => (
                <option key={l} value={l}>
                  {l}
                </option>
              ))}
            </select>
          ) : (
            <input
              type="number"
              min={0}
              data-testid="browse-layer"
              value={route.layer}
              onChange={(e) => go({ layer: Number(e.target.value) })}
            />
          )}
        </label>
      </div>
      {error && <ErrorView error={error} />}
      {fetching && !page && <div className="muted">Loading…</div>}
      {page && (
        <>
          <table className="nodes" data-testid="node-table">
            <thead>
              <tr>
                <th>index</th>
                <th>node</th>
                <th>max activation</th>
                <th>best explanation (score)</th>
              </tr>
            </thead>
            <tbody>
              {page.edges.map((e) => (
                <NodeRow key={e.node.id} id={e.node.id} index={e.node.index} />
              ))}
            </tbody>
          </table>
          <div className="row pager">
            <button
              type="button"
              data-testid="page-previous"
              disabled={!page.pageInfo.hasPreviousPage}
              onClick={() => navigate({ ...route, after: null, before: page.pageInfo.startCursor })}
            >
              ← previous {PAGE_SIZE}
            </button>
            <button
              type="button"
              data-testid="page-next"
              disabled={!page.pageInfo.hasNextPage}
              onClick={() => navigate({ ...route, before: null, after: page.pageInfo.endCursor })}
            >
              next {PAGE_SIZE} →
            </button>
            <span className="muted" data-testid="page-range">
              {page.edges.length > 0
                ? `${page.edges[0]?.node.index}–${page.edges.at(-1)?.node.index} of ${page.totalCount}`
                : `none of ${page.totalCount}`}
            </span>
          </div>
        </>
      )}
    </section>
  );
}

export { browseRoute };
