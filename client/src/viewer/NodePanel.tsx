import type { RecordFieldsFragment } from "../generated/hooks";
import { useNodePageQuery } from "../generated/hooks";
import { ErrorView } from "./ErrorView";
import { Heatmap, formatNumber } from "./Heatmap";
import { LivePrompt } from "./LivePrompt";
import { ScorePanel } from "./ScorePanel";

const RECORDS_SHOWN = 10;

/**
 * One value per token for the heatmap. MLP neurons and latents have that already. Attention heads store one
 * value per (query, key) pair; a query token is shown with its strongest pair (the max of its attention
 * row) and normalized against the node's max activation, as the server normalizes per-token records.
 */
export function perTokenValues(
  record: RecordFieldsFragment,
  maxActivation: number,
): { activations: number[]; normalized: number[] } {
  if (record.attentionRows === null) {
    return { activations: record.activations, normalized: record.normalizedActivations };
  }
  const activations = record.attentionRows.map((row) => (row.length === 0 ? 0 : Math.max(...row)));
  const normalized = activations.map((a) => (maxActivation > 0 ? Math.max(a / maxActivation, 0) : 0));
  return { activations, normalized };
}

function Records({
  title,
  records,
  maxActivation,
  testId,
}: {
  title: string;
  records: RecordFieldsFragment[];
  maxActivation: number;
  testId: string;
}) {
  return (
    <section className="panel" data-testid={testId}>
      <h2>{title}</h2>
      {records.length === 0 && <div className="muted">none</div>}
      {records.map((r, i) => (
        <div className="record" key={i}>
          <Heatmap tokens={r.tokens} {...perTokenValues(r, maxActivation)} />
          <span className="provenance">
            {r.provenance.source.toLowerCase()}
            {r.provenance.dataset ? ` · ${r.provenance.dataset}` : ""}
          </span>
        </div>
      ))}
    </section>
  );
}

/** Everything the server knows about one node: stats, top-activating records, explanations, live prompt, scoring. */
export function NodePanel({ nodeId }: { nodeId: string }) {
  const [{ data, error, fetching }, refetch] = useNodePageQuery({
    variables: { id: nodeId, first: RECORDS_SHOWN, source: "AUTO" },
  });
  if (fetching && !data) return <div className="muted" data-testid="loading">Loading {nodeId}…</div>;
  if (error) return <ErrorView error={error} />;
  const node = data?.node;
  if (!node) {
    return (
      <div className="error" role="alert" data-testid="error" data-code="NOT_FOUND">
        <strong>Not found</strong>
        <div className="error-message">The server has no node with id {nodeId}.</div>
      </div>
    );
  }
  const best = node.explanations.reduce<(typeof node.explanations)[number] | undefined>(
    (a, e) => (a === undefined || (e.score ?? -Infinity) > (a.score ?? -Infinity) ? e : a),
    undefined,
  );
  return (
    <div data-testid="node-panel" data-node-id={node.id}>
      <section className="panel stats" data-testid="stats">
        <h2>
          {node.kind.toLowerCase().replace(/_/g, " ")} · layer {node.layer} · index {node.index}
        </h2>
        <dl>
          <dt>max activation</dt>
          <dd data-testid="max-activation">{formatNumber(node.maxActivation)}</dd>
          <dt>mean</dt>
          <dd>{formatNumber(node.stats.mean)}</dd>
          <dt>variance</dt>
          <dd>{formatNumber(node.stats.variance)}</dd>
          <dt>skewness</dt>
          <dd>{formatNumber(node.stats.skewness)}</dd>
          <dt>kurtosis</dt>
          <dd>{formatNumber(node.stats.kurtosis)}</dd>
        </dl>
      </section>
      <section className="panel" data-testid="explanations">
        <h2>Explanations</h2>
        {node.explanations.length === 0 && <div className="muted">none stored</div>}
        <ul>
          {node.explanations.map((e, i) => (
            <li key={i}>
              <span className="explanation-text">{e.text}</span>{" "}
              <span className="muted">
                score {formatNumber(e.score)}
                {e.method ? ` · ${e.method}` : ""}
                {e.dataset ? ` · ${e.dataset}` : ""}
              </span>
            </li>
          ))}
        </ul>
      </section>
      <ScorePanel
        key={node.id}
        nodeId={node.id}
        initialExplanation={best?.text ?? ""}
        onScored={() => refetch({ requestPolicy: "network-only" })}
      />
      <LivePrompt key={`live-${node.id}`} nodeId={node.id} />
      <Records
        title="Top-activating records"
        records={node.topActivations}
        maxActivation={node.maxActivation}
        testId="top-activations"
      />
      <Records
        title="Random sample"
        records={node.randomSample}
        maxActivation={node.maxActivation}
        testId="random-sample"
      />
      {node.__typename === "AttentionHead" && (
        <div className="muted">Attention heads: each query token shows its strongest (query, key) pair.</div>
      )}
    </div>
  );
}
