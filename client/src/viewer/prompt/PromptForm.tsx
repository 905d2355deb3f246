import { useEffect, useState } from "react";

import type { LossKind, NodeTableKind } from "../../generated/hooks";
import { navigate } from "../routing";
import { enumLabel } from "../tokens/Tokens";
import { LOSS_KINDS, type PromptRoute, TABLE_KINDS } from "./promptRoute";

/** Several one-token strings in one box: split on `|` (a token may start with a space, so never trim it). */
function splitTokens(text: string): string[] {
  return text === "" ? [] : text.split("|").filter((t) => t !== "");
}

/** The texts of a prompt page (prompt, target, distractor, patch and compare prompts): applied on Run, as one new URL. */
export function PromptForm({ route, autoencoderKinds }: { route: PromptRoute; autoencoderKinds: NodeTableKind[] }) {
  const saved = { text: route.text, target: route.target.join("|"), distractor: route.distractor.join("|") };
  const [text, setText] = useState(saved.text);
  const [target, setTarget] = useState(saved.target);
  const [distractor, setDistractor] = useState(saved.distractor);
  const [from, setFrom] = useState(route.from ?? "");
  const [vs, setVs] = useState(route.vs ?? "");
  // Back/forward or a click elsewhere changed the URL: the boxes follow it.
  useEffect(() => {
    setText(saved.text);
    setTarget(saved.target);
    setDistractor(saved.distractor);
    setFrom(route.from ?? "");
    setVs(route.vs ?? "");
  }, [saved.text, saved.target, saved.distractor, route.from, route.vs]);
  const kinds = TABLE_KINDS.filter((k) => !k.includes("AUTOENCODER") || autoencoderKinds.includes(k));
  const chosen = route.kinds ?? ["EMBEDDING", "MLP_NEURON", "ATTENTION_HEAD"];
  const toggleKind = (kind: NodeTableKind, on: boolean) => {
    const next = TABLE_KINDS.filter((k) => (k === kind ? on : chosen.includes(k)));
    navigate({ ...route, kinds: next.length > 0 ? next : null });
  };
  return (
    <form
      className="panel prompt-form"
      data-testid="prompt-form"
      onSubmit={(event) => {
        event.preventDefault();
        const textChanged = text !== route.text;
        navigate({
          ...route,
          text,
          target: splitTokens(target),
          distractor: splitTokens(distractor),
          from: from === "" ? null : from,
          vs: vs === "" ? null : vs,
          // Token positions of another prompt mean nothing here.
          ...(textChanged ? { ablations: [], patches: [], trace: null } : {}),
        });
      }}
    >
      <div className="row">
        <textarea
          className="grow"
          rows={2}
          data-testid="prompt-text"
          aria-label="prompt"
          value={text}
          onChange={(e) => setText(e.target.value)}
          placeholder="Type a prompt"
        />
        <button type="submit" data-testid="prompt-submit" disabled={text === ""}>
          Run
        </button>
      </div>
      <div className="row">
        <label>
          target{" "}
          <input data-testid="prompt-target" value={target} onChange={(e) => setTarget(e.target.value)} placeholder='e.g. " Mary"' size={12} />
        </label>
        <label>
          distractor{" "}
          <input
            data-testid="prompt-distractor"
            value={distractor}
            onChange={(e) => setDistractor(e.target.value)}
            placeholder='e.g. " John"'
            size={12}
          />
        </label>
        <label>
          loss{" "}
          <select
            data-testid="prompt-loss"
            value={route.loss ?? "LOGIT_DIFF"}
            onChange={(e) => navigate({ ...route, loss: e.target.value === "LOGIT_DIFF" ? null : (e.target.value as LossKind) })}
          >
            {LOSS_KINDS.map((l) => (
              <option key={l} value={l}>
                {enumLabel(l)}
              </option>
            ))}
          </select>
        </label>
        <label>
          rows per column{" "}
          <input
            type="number"
            min={1}
            max={100}
            data-testid="prompt-k"
            value={route.k}
            onChange={(e) => {
              const k = Number(e.target.value);
              if (Number.isInteger(k) && k >= 1 && k <= 100) navigate({ ...route, k }, true);
            }}
          />
        </label>
        <span className="muted">several tokens: separate with |; mind the leading space</span>
      </div>
      <div className="row" data-testid="prompt-kinds">
        <span className="muted">kinds</span>
        {kinds.map((kind) => (
          <label key={kind}>
            <input
              type="checkbox"
              data-testid={`kind-${kind}`}
              checked={chosen.includes(kind)}
              onChange={(e) => toggleKind(kind, e.target.checked)}
            />{" "}
            {enumLabel(kind)}
          </label>
        ))}
      </div>
      <div className="row">
        <label className="grow">
          patch from{" "}
          <input
            className="wide"
            data-testid="prompt-from"
            value={from}
            onChange={(e) => setFrom(e.target.value)}
            placeholder="a prompt of the same length (clean values for a row's patch button)"
          />
        </label>
        <label className="grow">
          compare with{" "}
          <input
            className="wide"
            data-testid="prompt-vs"
            value={vs}
            onChange={(e) => setVs(e.target.value)}
            placeholder="another prompt of the same length (default: this one)"
          />
        </label>
      </div>
    </form>
  );
}
