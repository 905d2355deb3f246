import { stringifyVariables } from "urql";

import {
  type AttentionPath,
  type NodeTableKind,
  useCompareConditionsQuery,
  useModelInfoQuery,
  useNodeTableQuery,
  usePromptTokensQuery,
} from "../../generated/hooks";
import { ErrorView } from "../ErrorView";
import { linkProps, navigate, nodeRoute, routeToSearch } from "../routing";
import { TokenStrip, enumLabel, formatNumber } from "../tokens/Tokens";
import { NodeTable, type TableRow } from "./NodeTable";
import { PromptForm } from "./PromptForm";
import { type PromptRoute, ablationInputs, sameNodeAt, targetInput, writeNodeAt } from "./promptRoute";

interface Logit {
  token: string;
  probability: number;
}

/** A condition's tokens coloured by TDB's token attribution (embedding · gradient), scaled to the largest |value|. */
function Attribution({ label, tokens, values, testId }: { label: string; tokens: string[]; values: number[] | null; testId: string }) {
  const scale = Math.max(0, ...(values ?? []).map(Math.abs));
  return (
    <div className="attribution" data-testid={testId}>
      <div className="muted">{label}</div>
      <TokenStrip
        tokens={tokens}
        values={values ?? tokens.map(() => 0)}
        normalized={(values ?? []).map((v) => (scale > 0 ? v / scale : 0))}
        valueLabel="attribution"
        testId="attribution-strip"
      />
    </div>
  );
}

/** A probability as a percentage; a small one (an untrained model's) in exponent form. */
function formatProbability(p: number): string {
  return p >= 0.001 ? `${(p * 100).toFixed(1)}%` : p.toExponential(1);
}

/** The top next tokens; without a trace, a click makes one the target. */
function TopLogits({ route, logits, label, testId }: { route: PromptRoute; logits: Logit[] | null; label: string; testId: string }) {
  if (logits === null) return null;
  return (
    <div data-testid={testId}>
      <div className="muted">{label}</div>
      <ol className="logits">
        {logits.map((l, i) => (
          <li key={l.token} data-testid="logit" data-token={l.token} data-probability={l.probability}>
            <span className="muted">{i + 1}.</span>{" "}
            <button
              type="button"
              className="link-button"
              title="make it the target"
              onClick={() => navigate({ ...route, target: [l.token], trace: null, path: null })}
            >
              <code>{JSON.stringify(l.token)}</code>
            </button>{" "}
            <span className="muted">{formatProbability(l.probability)}</span>
          </li>
        ))}
      </ol>
    </div>
  );
}

/** What the backward pass differentiates, the ablations and patches (each removable), and the compare switch. */
function Conditions({ route, isHead }: { route: PromptRoute; isHead: boolean }) {
  const t = route.trace;
  return (
    <section className="panel conditions" data-testid="conditions">
      <div className="row" data-testid="target-summary">
        <strong>target</strong>
        {t !== null ? (
          <>
            <span data-testid="trace-summary">
              tracing <a {...linkProps(nodeRoute(t.node))}>{t.node}</a> at token {t.token}
              {t.keyToken !== null ? ` (key ${t.keyToken})` : ""}:{" "}
              {isHead ? `the pair's attention logit through ${route.path ?? "QK"}` : "its pre-activation"}
            </span>
            {isHead && (
              <label>
                path{" "}
                <select
                  data-testid="trace-path"
                  value={route.path ?? "QK"}
                  onChange={(e) => navigate({ ...route, path: e.target.value === "QK" ? null : (e.target.value as AttentionPath) })}
                >
                  {(["QK", "Q", "K", "V"] as const).map((p) => (
                    <option key={p} value={p}>
                      {p}
                    </option>
                  ))}
                </select>
              </label>
            )}
            <button type="button" data-testid="trace-clear" onClick={() => navigate({ ...route, trace: null, path: null })}>
              stop tracing
            </button>
          </>
        ) : route.target.length > 0 || route.loss !== null ? (
          <span>
            {enumLabel(route.loss ?? "LOGIT_DIFF")} of {route.target.map((s) => JSON.stringify(s)).join(", ")}
            {route.distractor.length > 0 ? ` vs ${route.distractor.map((s) => JSON.stringify(s)).join(", ")}` : ""} at the last token
          </span>
        ) : (
          <span className="muted">none yet: type a target token, or click one of the top next tokens</span>
        )}
      </div>
      <div className="row" data-testid="ablation-list">
        <strong>ablations</strong>
        {route.ablations.length + route.patches.length === 0 && <span className="muted">none: a row's ablate or patch button adds one</span>}
        {route.ablations.map((a) => (
          <RemovableChip
            key={`a-${writeNodeAt(a)}`}
            testId="ablation"
            label={`${writeNodeAt(a)} = ${a.value}`}
            onRemove={() => navigate({ ...route, ablations: route.ablations.filter((b) => !sameNodeAt(a, b)) })}
          />
        ))}
        {route.patches.map((p) => (
          <RemovableChip
            key={`p-${writeNodeAt(p)}`}
            testId="patch"
            label={`${writeNodeAt(p)} ← ${JSON.stringify(route.from ?? route.text)}`}
            onRemove={() => navigate({ ...route, patches: route.patches.filter((b) => !sameNodeAt(p, b)) })}
          />
        ))}
      </div>
      <div className="row">
        <label>
          <input
            type="checkbox"
            data-testid="compare-toggle"
            checked={route.compare}
            onChange={(e) => navigate({ ...route, compare: e.target.checked })}
          />{" "}
          two conditions side by side: left = this prompt without ablations, right ={" "}
          {route.vs === null ? "the same prompt" : JSON.stringify(route.vs)} with them
        </label>
      </div>
    </section>
  );
}

/**
 * TDB's main view: a prompt and a target, the node table with every column, ablate / patch / trace by a
 * click, two conditions side by side, token attribution on the prompt and the top logits. Every change
 * is a new URL and one query: PromptTokens (no target yet), NodeTable, or CompareConditions.
 */
export function PromptPage({ route }: { route: PromptRoute }) {
  const [{ data: info }] = useModelInfoQuery();
  const m = info?.modelInfo;
  const autoencoderKinds: NodeTableKind[] = [];
  if (m?.mlpAutoencoderName) autoencoderKinds.push("MLP_AUTOENCODER_LATENT");
  if (m?.attentionAutoencoderName) autoencoderKinds.push("ATTENTION_AUTOENCODER_LATENT");

  const target = targetInput(route);
  const ablations = ablationInputs(route);
  const mode = target === null ? "tokens" : route.compare ? "compare" : "table";
  const tableVars = { text: route.text, target: target ?? {}, ablations, k: route.k, kinds: route.kinds };
  const compareVars = { ...tableVars, otherText: route.vs };
  const tokensVars = { text: route.text, ablations };
  const [tokensResult] = usePromptTokensQuery({ variables: tokensVars, pause: mode !== "tokens" });
  const [tableResult] = useNodeTableQuery({ variables: tableVars, pause: mode !== "table" });
  const [compareResult] = useCompareConditionsQuery({ variables: compareVars, pause: mode !== "compare" });
  const result = mode === "tokens" ? tokensResult : mode === "table" ? tableResult : compareResult;
  const wanted = stringifyVariables(mode === "tokens" ? tokensVars : mode === "table" ? tableVars : compareVars);
  const current = result.operation !== undefined && stringifyVariables(result.operation.variables) === wanted;
  const ready = current && !result.fetching && (result.data !== undefined || result.error !== undefined);

  const prompt = (mode === "table" ? tableResult : mode === "compare" ? compareResult : tokensResult).data?.prompt ?? null;
  let rows: TableRow[] | null = null;
  let targetValue: number | null = null;
  let attribution: number[] | null = null;
  let logits: Logit[] | null = null;
  let other: { tokens: string[]; targetValue: number | null; tokenAttribution: number[] | null; topLogits: Logit[] | null } | null = null;
  const tableP = tableResult.data?.prompt;
  const compareP = compareResult.data?.prompt;
  if (mode === "table" && tableP) {
    const p = tableP;
    rows =
      p.nodeTable?.map((r) => ({
        kind: r.kind,
        nodeId: r.node?.id ?? null,
        token: r.token,
        keyToken: r.keyToken,
        values: r,
        left: null,
        right: null,
        difference: null,
      })) ?? null;
    targetValue = p.targetValue;
    attribution = p.tokenAttribution;
    logits = p.topLogits;
  } else if (mode === "compare" && compareP) {
    const p = compareP;
    rows =
      p.compareWith?.nodeTable?.map((r) => ({
        kind: r.kind,
        nodeId: r.node?.id ?? null,
        token: r.token,
        keyToken: r.keyToken,
        values: null,
        left: r.left,
        right: r.right,
        difference: r.difference,
      })) ?? null;
    targetValue = p.targetValue;
    attribution = p.tokenAttribution;
    logits = p.topLogits;
    other = p.compareWith?.other ?? null;
  } else if (mode === "tokens") {
    logits = tokensResult.data?.prompt?.topLogits ?? null;
  }
  const isHead = route.trace !== null && /\/attention_head\//.test(route.trace.node);
  const tokens = (mode === "table" ? tableResult : mode === "compare" ? compareResult : tokensResult).data?.prompt?.tokens ?? [];
  const at = route.trace === null ? "after the last token" : `at the traced token ${route.trace.token}`;
  return (
    <div data-testid="prompt-page" data-mode={mode} data-ready={ready ? "1" : "0"} data-url={routeToSearch(route)}>
      <PromptForm route={route} autoencoderKinds={autoencoderKinds} />
      <Conditions route={route} isHead={isHead} />
      {result.fetching && <div className="muted" data-testid="prompt-loading">Running the model…</div>}
      {result.error && <ErrorView error={result.error} />}
      {prompt !== null && (
        <section className="panel" data-testid="prompt-tokens" data-tokens={JSON.stringify(tokens)}>
          <h2>
            Tokens
            {targetValue !== null && (
              <span className="muted" data-testid="target-value" data-value={targetValue}>
                {" "}
                · target value {formatNumber(targetValue, 4)}
                {other?.targetValue != null && ` (left) · ${formatNumber(other.targetValue, 4)} (right)`}
              </span>
            )}
          </h2>
          <div className={other ? "side-by-side" : ""}>
            <Attribution
              label={mode === "tokens" ? "the prompt" : other ? "left: token attribution" : "token attribution (embedding · gradient of the target)"}
              tokens={tokens}
              values={mode === "tokens" ? null : attribution}
              testId="attribution"
            />
            {other && <Attribution label="right: token attribution" tokens={other.tokens} values={other.tokenAttribution} testId="attribution-right" />}
          </div>
          <div className={other ? "side-by-side" : ""}>
            <TopLogits route={route} logits={logits} label={`${other ? "left: " : ""}top next tokens ${at}`} testId="top-logits" />
            {other && <TopLogits route={route} logits={other.topLogits} label={`right: top next tokens ${at}`} testId="top-logits-right" />}
          </div>
        </section>
      )}
      {rows !== null && (
        <section className="panel" data-testid="prompt-table-panel">
          <h2>
            Node table <span className="muted">· {rows.length} rows: the {route.k} largest and smallest of each column</span>
          </h2>
          <NodeTable route={route} rows={rows} tokens={tokens} />
        </section>
      )}
    </div>
  );
}

/** One ablation or patch of the URL's list, with a button that takes it out. */
function RemovableChip({ testId, label, onRemove }: { testId: string; label: string; onRemove: () => void }) {
  return (
    <span className="chip" data-testid={testId}>
      {label}
      <button type="button" aria-label="remove" onClick={onRemove}>
        ×
      </button>
    </span>
  );
}
