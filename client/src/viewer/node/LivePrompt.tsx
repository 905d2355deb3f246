import { useState } from "react";

import { useNodeActivationsQuery } from "../../generated/hooks";
import { ErrorView } from "../ErrorView";
import { type Route, navigate } from "../routing";
import { TokenStrip, argmax } from "../tokens/Tokens";
import { AttentionDetail, strongestQuery } from "./Attention";
import { TraceLink } from "./TraceLink";

type NodeRoute = Extract<Route, { page: "node" }>;

/** A prompt box (kept in the URL as `prompt=`): the node's activations on it, computed by the live model. */
export function LivePrompt({ route, maxActivation }: { route: NodeRoute; maxActivation: number }) {
  const [draft, setDraft] = useState(route.prompt ?? "");
  const prompt = route.prompt;
  const [{ data, error, fetching }] = useNodeActivationsQuery({
    variables: { id: route.id, prompt: prompt ?? "" },
    pause: prompt === null,
    requestPolicy: "network-only",
  });
  const live = data?.node?.activations;
  const rows = live?.attentionRows ?? null;
  return (
    <section className="panel" data-testid="live-prompt">
      <h2>Live activations on a prompt</h2>
      <form
        className="row"
        onSubmit={(event) => {
          event.preventDefault();
          navigate({ ...route, prompt: draft, record: route.record === "live" ? null : route.record }, true);
        }}
      >
        <textarea
          className="grow"
          data-testid="prompt-input"
          rows={2}
          value={draft}
          onChange={(e) => setDraft(e.target.value)}
          placeholder="Type a prompt"
        />
        <button type="submit" data-testid="prompt-run" disabled={draft.trim() === ""}>
          Run
        </button>
      </form>
      {fetching && <div className="muted">Running the model…</div>}
      {live && prompt !== null && (
        <TraceLink
          id={route.id}
          text={prompt}
          tokens={live.tokens}
          activations={live.activations}
          attentionRows={live.attentionRows ?? null}
          label="trace this node on this prompt"
          testId="trace-live-link"
        />
      )}
      {error && <ErrorView error={error} />}
      {live && rows === null && (
        <div data-testid="live-result">
          <TokenStrip
            tokens={live.tokens}
            values={live.activations}
            normalized={live.normalizedActivations}
            marked={new Set([argmax(live.activations)])}
          />
        </div>
      )}
      {live && rows !== null && (
        <div data-testid="live-result">
          <AttentionDetail
            record={{ tokens: live.tokens, attentionRows: rows }}
            label="your prompt"
            query={route.record === "live" && route.query !== null ? route.query : strongestQuery(rows)}
            maxActivation={maxActivation}
            onQuery={(query) => navigate({ ...route, record: "live", query }, true)}
          />
        </div>
      )}
    </section>
  );
}
