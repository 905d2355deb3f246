import { useEffect, useState } from "react";

import { useModelInfoQuery } from "../generated/hooks";
import { ErrorView, FatalBanner } from "./ErrorView";
import { NodePanel } from "./NodePanel";

function nodeFromUrl(): string {
  return new URLSearchParams(window.location.search).get("node") ?? "";
}

function ModelHeader() {
  const [{ data, error }] = useModelInfoQuery();
  if (error) return <ErrorView error={error} />;
  const m = data?.modelInfo;
  if (!m) return null;
  const shape = m.nLayers === null ? "" : `: ${m.nLayers} layers, d_model ${m.dModel}, d_mlp ${m.dMlp}, ${m.nHeads} heads`;
  const autoencoders = [m.mlpAutoencoderName, m.attentionAutoencoderName].filter((a) => a !== null);
  return (
    <div className="muted" data-testid="model-info">
      model {m.modelName}
      {shape}
      {autoencoders.length > 0 && ` · autoencoders ${autoencoders.join(", ")}`}
      {m.running ? " · running (live fields available)" : " · not running (stored data only)"}
    </div>
  );
}

/** The viewer: a node id box (kept in `?node=` so a view can be linked) and that node's panel. */
export function App() {
  const [nodeId, setNodeId] = useState(nodeFromUrl);
  const [draft, setDraft] = useState(nodeId);

  useEffect(() => {
    const onPop = () => {
      const id = nodeFromUrl();
      setNodeId(id);
      setDraft(id);
    };
    window.addEventListener("popstate", onPop);
    return () => window.removeEventListener("popstate", onPop);
  }, []);

  const open = (id: string) => {
    const url = new URL(window.location.href);
    url.searchParams.set("node", id);
    window.history.pushState(null, "", url);
    setNodeId(id);
  };

  return (
    <main>
      <FatalBanner />
      <header>
        <h1>neuron-explainer</h1>
        <a href="/graphql">GraphiQL</a>
      </header>
      <ModelHeader />
      <form
        className="row"
        onSubmit={(event) => {
          event.preventDefault();
          if (draft.trim() !== "") open(draft.trim());
        }}
      >
        <input
          className="grow"
          data-testid="node-input"
          value={draft}
          onChange={(e) => setDraft(e.target.value)}
          placeholder="node id, e.g. gpt2-small/mlp_neuron/5/131"
        />
        <button type="submit" data-testid="node-open">
          Open
        </button>
      </form>
      {nodeId !== "" && <NodePanel key={nodeId} nodeId={nodeId} />}
    </main>
  );
}
