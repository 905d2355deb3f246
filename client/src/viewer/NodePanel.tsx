import type { RecordFieldsFragment } from "../generated/hooks";
import { useNodePageQuery } from "../generated/hooks";
import { ErrorView } from "./ErrorView";
import { Heatmap, formatNumber } from "./Heatmap";
import { LivePrompt } from "./LivePrompt";
import { ScorePanel } from "./ScorePanel";

const RECORDS_SHOWN = 10;

function Records({ title, records, testId }: { title: string; records: RecordFieldsFragment[]; testId: string }) {
  return (
    <section className="panel" data-testid={testId}>
      <h2>{title}</h2>
      {records.length === 0 && <div className="muted">none</div>}
      {records.map((r, i) => (
        <div className="record" key={i}>
          <Heatmap tokens={r.tokens} activations={r.activations} normalized={r.normalizedActivations} />
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
  const [{ data, error, fetching }] = useNodePageQuery({
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
      <ScorePanel key={node.id} nodeId={node.id} initialExplanation={best?.text ?? ""} />
      <LivePrompt key={`live-${node.id}`} nodeId={node.id} />
      <Records title="Top-activating records" records={node.topActivations} testId="top-activations" />
      <Records title="Random sample" records={node.randomSample} testId="random-sample" />
    </div>
  );
}
