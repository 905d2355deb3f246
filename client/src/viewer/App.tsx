import { useEffect, useState } from "react";

import { useModelInfoQuery } from "../generated/hooks";
import { BrowsePage } from "./browse/BrowsePage";
import { ErrorView, FatalBanner } from "./ErrorView";
import { HomePage } from "./home/HomePage";
import { NodePage } from "./node/NodePage";
import { PromptPage } from "./prompt/PromptPage";
import { promptRoute } from "./prompt/promptRoute";
import { type Route, linkProps, navigate, nodeRoute, useRoute } from "./routing";

/** The server's start-up, from `/health/ready`: the page waits (and says what the server is doing) until 200. */
function useServerReady(): { ready: boolean; phase: string | null } {
  const [state, setState] = useState<{ ready: boolean; phase: string | null }>({ ready: false, phase: null });
  useEffect(() => {
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const poll = async () => {
      try {
        const response = await fetch("/health/ready", { cache: "no-store" });
        const body = (await response.json()) as { status?: string; phase?: string; reason?: string };
        if (stopped) return;
        if (response.ok) {
          setState({ ready: true, phase: null });
          return;
        }
        setState({ ready: false, phase: body.reason ? `could not start: ${body.reason}` : (body.phase ?? body.status ?? null) });
      } catch {
        if (!stopped) setState({ ready: false, phase: "not reachable" });
      }
      timer = setTimeout(() => void poll(), 1000);
    };
    void poll();
    return () => {
      stopped = true;
      if (timer !== undefined) clearTimeout(timer);
    };
  }, []);
  return state;
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

/** Jump to a node by id, from every page. */
function JumpBox({ current }: { current: string }) {
  const [draft, setDraft] = useState(current);
  useEffect(() => setDraft(current), [current]);
  return (
    <form
      className="row jump"
      onSubmit={(event) => {
        event.preventDefault();
        if (draft.trim() !== "") navigate(nodeRoute(draft.trim()));
      }}
    >
      <input
        className="grow"
        data-testid="node-input"
        value={draft}
        onChange={(e) => setDraft(e.target.value)}
        placeholder="node id, e.g. tiny-gpt2/mlp_neuron/1/37"
        aria-label="node id"
      />
      <button type="submit" data-testid="node-open">
        Open
      </button>
    </form>
  );
}

/** The prompt the header's "Prompt" link opens (TDB's indirect-object example). */
const EXAMPLE_PROMPT = "When Mary and John went to the store, John gave a drink to";

/** The page for a route: one entry per page. */
function Page({ route }: { route: Route }) {
  switch (route.page) {
    case "node":
      return <NodePage key={route.id} route={route} />;
    case "browse":
      return <BrowsePage route={route} />;
    case "prompt":
      return <PromptPage route={route} />;
    case "home":
      return <HomePage />;
  }
}

/** The viewer: a header (home, jump by id, GraphiQL), the model, and the page the URL names. */
export function App() {
  const route = useRoute();
  const { ready, phase } = useServerReady();
  return (
    <main>
      <FatalBanner />
      <header className="top">
        <h1>
          <a {...linkProps({ page: "home" })}>neuron-explainer</a>
        </h1>
        <JumpBox current={route.page === "node" ? route.id : ""} />
        <a data-testid="prompt-link" {...linkProps(promptRoute(EXAMPLE_PROMPT, { target: [" Mary"], distractor: [" John"] }))}>
          Prompt
        </a>
        <a href="/graphql">GraphiQL</a>
      </header>
      {ready ? (
        <>
          <ModelHeader />
          <Page route={route} />
        </>
      ) : (
        <div className="notice" data-testid="starting">
          The server is starting{phase ? ` (${phase})` : ""}; this page continues once it is ready.
        </div>
      )}
    </main>
  );
}
