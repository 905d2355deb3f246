import { useState } from "react";

import { useNodeActivationsQuery } from "../generated/hooks";
import { ErrorView } from "./ErrorView";
import { Heatmap } from "./Heatmap";

/** A prompt box: the node's activations on the user's text, computed by the live model. */
export function LivePrompt({ nodeId }: { nodeId: string }) {
  const [draft, setDraft] = useState("");
  const [prompt, setPrompt] = useState<string | null>(null);
  const [{ data, error, fetching }] = useNodeActivationsQuery({
    variables: { id: nodeId, prompt: prompt ?? "" },
    pause: prompt === null,
    requestPolicy: "network-only",
  });
  const live = data?.node?.activations;
  return (
    <section className="panel" data-testid="live-prompt">
      <h2>Live activations on a prompt</h2>
      <form
        className="row"
        onSubmit={(event) => {
          event.preventDefault();
          setPrompt(draft);
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
      {error && <ErrorView error={error} />}
      {live && (
        <div data-testid="live-result">
          <Heatmap tokens={live.tokens} activations={live.activations} normalized={live.normalizedActivations} />
        </div>
      )}
    </section>
  );
}
