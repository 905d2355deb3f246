import { useCallback, useEffect, useState } from "react";

import { useNodeExplanationsQuery, useNodePageQuery } from "../../generated/hooks";
import { ErrorView } from "../ErrorView";
import { type Route, linkProps, navigate } from "../routing";
import { enumLabel, formatNumber } from "../tokens/Tokens";
import { AttentionDetail, HeadRecords, strongestQuery } from "./Attention";
import { ActivationHistogram } from "./Histogram";
import { JobPanels } from "./JobPanels";
import { LivePrompt } from "./LivePrompt";
import { LogitLens } from "./LogitLens";
import { Neighbours } from "./Neighbours";
import { Records } from "./Records";
import { TraceLink } from "./TraceLink";

type NodeRoute = Extract<Route, { page: "node" }>;

/** The stored explanations, best first; fetched again (`version` changes) when a job has stored one. */
function Explanations({ id, version }: { id: string; version: number }) {
  const [{ data, error }, reexecute] = useNodeExplanationsQuery({ variables: { id } });
  useEffect(() => {
    if (version > 0) reexecute({ requestPolicy: "network-only" });
  }, [version, reexecute]);
  if (error) return <ErrorView error={error} />;
  const explanations = [...(data?.node?.explanations ?? [])].sort((a, b) => (b.score ?? -Infinity) - (a.score ?? -Infinity));
  return (
    <section className="panel" data-testid="explanations">
      <h2>Explanations</h2>
      {explanations.length === 0 && <div className="muted">none stored: explain or score one below</div>}
      <ul>
        {explanations.map((e, i) => (
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
  );
}

/** A node: stats and the activation histogram, explanations (explain, score), live activations, records. */
export function NodePage({ route }: { route: NodeRoute }) {
  const [{ data, error, fetching }] = useNodePageQuery({
    variables: { id: route.id, first: route.top, random: route.random, source: "AUTO" },
  });
  const [stored, setStored] = useState(0);
  const onStored = useCallback(() => setStored((n) => n + 1), []);
  if (fetching && !data) return <div className="muted" data-testid="loading">Loading {route.id}…</div>;
  if (error) return <ErrorView error={error} />;
  const node = data?.node;
  if (!node) {
    return (
      <div className="error" role="alert" data-testid="error" data-code="NOT_FOUND">
        <strong>Not found</strong>
        <div className="error-message">The server has no node with id {route.id}.</div>
      </div>
    );
  }
  const autoencoder = node.__typename === "AutoencoderLatent" ? node.autoencoder : null;
  const isHead = node.__typename === "AttentionHead";
  const randomMaxima = node.randomSample.map((r) => Math.max(...r.activations));
  const best = node.explanations.reduce<(typeof node.explanations)[number] | undefined>(
    (a, e) => (a === undefined || (e.score ?? -Infinity) > (a.score ?? -Infinity) ? e : a),
    undefined,
  );
  const s = node.stats;
  const set = (patch: Partial<NodeRoute>) => navigate({ ...route, ...patch }, true);

  // Heads: the record shown in detail, from the URL (`rec=top:3`), else the top record.
  const [source, indexText] = (route.record ?? "top:0").split(":");
  const pool = source === "random" ? node.randomSample : node.topActivations;
  const detail = pool[Number(indexText)] ?? node.topActivations[0];
  const detailRows = detail?.attentionRows ?? null;

  return (
    <div data-testid="node-panel" data-node-id={node.id} data-typename={node.__typename}>
      <header className="node-header">
        <h2>
          {enumLabel(node.kind)}
          {autoencoder ? ` (${autoencoder})` : ""} · layer {node.layer} · index {node.index}
        </h2>
        <code className="muted">{node.id}</code>
        <Neighbours id={node.id} kind={node.kind} autoencoder={autoencoder} />
        {node.topActivations[0] && (
          <TraceLink
            id={node.id}
            tokens={node.topActivations[0].tokens}
            activations={node.topActivations[0].activations}
            attentionRows={node.topActivations[0].attentionRows ?? null}
            label="trace this node on its top record"
          />
        )}
      </header>
      <div className="columns">
        <section className="panel stats" data-testid="stats">
          <h2>Activations</h2>
          <dl>
            <dt>max activation</dt>
            <dd data-testid="max-activation">{formatNumber(node.maxActivation)}</dd>
            <dt>mean</dt>
            <dd data-testid="stat-mean">{formatNumber(s.mean)}</dd>
            <dt>std</dt>
            <dd>{formatNumber(s.variance === null ? null : Math.sqrt(s.variance))}</dd>
            <dt>skewness</dt>
            <dd>{formatNumber(s.skewness)}</dd>
            <dt>kurtosis</dt>
            <dd>{formatNumber(s.kurtosis)}</dd>
          </dl>
          <ActivationHistogram
            boundaries={s.quantileBoundaries}
            levels={s.quantileLevels}
            low={randomMaxima.length > 0 ? Math.min(...randomMaxima) : (s.quantileBoundaries?.[0] ?? 0)}
            high={node.maxActivation}
          />
          <div className="provenance">
            {s.provenance.source.toLowerCase()}
            {s.provenance.dataset ? ` · ${s.provenance.dataset}` : ""}
          </div>
        </section>
        <Explanations id={node.id} version={stored} />
      </div>
      <LogitLens key={`lens-${node.id}`} id={node.id} kind={node.kind} />
      <JobPanels key={node.id} route={route} initialExplanation={best?.text ?? ""} onStored={onStored} />
      <LivePrompt key={`live-${node.id}`} route={route} maxActivation={node.maxActivation} />
      <div className="row">
        <label>
          <input
            type="checkbox"
            data-testid="show-full"
            checked={route.full}
            onChange={(e) => set({ full: e.target.checked })}
          />{" "}
          show whole records (instead of centred on their max token)
        </label>
      </div>
      {isHead && detail && detailRows && route.record !== "live" && (
        <AttentionDetail
          record={{ tokens: detail.tokens, attentionRows: detailRows }}
          label={route.record?.startsWith("random") ? `random record ${indexText}` : `top record ${route.record ? indexText : 0}`}
          query={route.query ?? strongestQuery(detailRows)}
          maxActivation={node.maxActivation}
          onQuery={(query) => set({ record: route.record ?? "top:0", query })}
        />
      )}
      {isHead ? (
        <>
          <HeadRecords
            title="Top-activating records"
            records={node.topActivations}
            maxActivation={node.maxActivation}
            source="top"
            selected={route.record ?? "top:0"}
            full={route.full}
            onSelect={(record, query) => set({ record, query })}
            testId="top-activations"
          />
          <HeadRecords
            title="Random sample"
            records={node.randomSample}
            maxActivation={node.maxActivation}
            source="random"
            selected={route.record}
            full={route.full}
            onSelect={(record, query) => set({ record, query })}
            testId="random-sample"
          />
        </>
      ) : (
        <>
          <Records title="Top-activating records" records={node.topActivations} full={route.full} testId="top-activations" />
          <Records title="Random sample" records={node.randomSample} full={route.full} testId="random-sample" />
        </>
      )}
      <div className="row">
        {node.topActivations.length >= route.top && (
          <a data-testid="more-top" {...linkProps({ ...route, top: route.top + 20 })}>
            more top records
          </a>
        )}
        {node.randomSample.length >= route.random && (
          <a data-testid="more-random" {...linkProps({ ...route, random: route.random + 10 })}>
            more random records
          </a>
        )}
      </div>
    </div>
  );
}
