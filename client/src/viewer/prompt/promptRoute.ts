import type { AblationInput, AttentionPath, LossKind, NodeTableKind, TargetInput } from "../../generated/hooks";

/**
 * The prompt page's state, all of it in the URL (`/?prompt=...&target=...`), so a view of the debugger
 * can be linked, reloaded and gone back to. Ablations and patches are written `<node>@<token>` (a
 * head's token is its query; no `@`: every token) with an optional `=<value>` for ablations, a trace
 * `<node>@<token>` or, for a head's (query, key) pair, `<node>@<query>:<key>`.
 */
export type Column = "activation" | "writeNorm" | "actTimesGrad" | "directEffect";
export const COLUMNS: readonly Column[] = ["activation", "writeNorm", "actTimesGrad", "directEffect"];

export const LOSS_KINDS: readonly LossKind[] = ["LOGIT_DIFF", "LOGIT_MINUS_MEAN", "PROBS", "ZERO"];
export const TABLE_KINDS: readonly NodeTableKind[] = [
  "EMBEDDING",
  "MLP_NEURON",
  "ATTENTION_HEAD",
  "MLP_AUTOENCODER_LATENT",
  "ATTENTION_AUTOENCODER_LATENT",
];
const PATHS: readonly AttentionPath[] = ["Q", "K", "QK", "V"];

/** A node at one token (null: every token); an ablation also has the value it writes. */
export interface NodeAt {
  node: string;
  token: number | null;
}
export interface Ablation extends NodeAt {
  value: number;
}
export interface Trace {
  node: string;
  token: number;
  keyToken: number | null;
}

export interface PromptRoute {
  page: "prompt";
  text: string;
  /** The loss's target and distractor strings, each exactly one token (`target=` / `distractor=`, repeatable). */
  target: string[];
  distractor: string[];
  loss: LossKind | null;
  /** Node-table rows per column and sign (`k=`). */
  k: number;
  /** Node-table kinds (`kinds=MLP_NEURON,ATTENTION_HEAD`); null: the server's default. */
  kinds: NodeTableKind[] | null;
  ablations: Ablation[];
  /** Nodes patched with their values on `from` (a prompt of the same length). */
  patches: NodeAt[];
  from: string | null;
  /** A node the backward pass differentiates instead of the loss (`trace=`, `path=` for heads). */
  trace: Trace | null;
  path: AttentionPath | null;
  /** Two conditions side by side: the prompt without ablations (left) against `vs` (default: the same prompt) with them. */
  compare: boolean;
  vs: string | null;
  /** The table's order: largest |column| first (in compare mode, largest |right - left|). */
  sort: Column;
}

export const DEFAULT_K = 10;

export function promptRoute(text: string, extra: Partial<PromptRoute> = {}): PromptRoute {
  return {
    page: "prompt",
    text,
    target: [],
    distractor: [],
    loss: null,
    k: DEFAULT_K,
    kinds: null,
    ablations: [],
    patches: [],
    from: null,
    trace: null,
    path: null,
    compare: false,
    vs: null,
    sort: "actTimesGrad",
    ...extra,
  };
}

const AT = /^([^@=]+?)(?:@(\d+))?(?:=(-?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?))?$/i;

function parseAblation(text: string): Ablation | null {
  const m = AT.exec(text.trim());
  if (!m) return null;
  return { node: m[1] ?? "", token: m[2] === undefined ? null : Number(m[2]), value: m[3] === undefined ? 0 : Number(m[3]) };
}

export function writeNodeAt(at: NodeAt): string {
  return at.token === null ? at.node : `${at.node}@${at.token}`;
}

function writeAblation(a: Ablation): string {
  return a.value === 0 ? writeNodeAt(a) : `${writeNodeAt(a)}=${a.value}`;
}

function parseTrace(text: string | null): Trace | null {
  const m = text === null ? null : /^([^@]+)@(\d+)(?::(\d+))?$/.exec(text.trim());
  if (!m) return null;
  return { node: m[1] ?? "", token: Number(m[2]), keyToken: m[3] === undefined ? null : Number(m[3]) };
}

export function writeTrace(t: Trace): string {
  return `${t.node}@${t.token}${t.keyToken === null ? "" : `:${t.keyToken}`}`;
}

function oneOf<T extends string>(value: string | null, options: readonly T[]): T | null {
  return value !== null && (options as readonly string[]).includes(value) ? (value as T) : null;
}

export function parsePromptRoute(q: URLSearchParams): PromptRoute {
  const k = Number(q.get("k") ?? DEFAULT_K);
  const kinds = q.get("kinds");
  return promptRoute(q.get("prompt") ?? "", {
    target: q.getAll("target"),
    distractor: q.getAll("distractor"),
    loss: oneOf(q.get("loss"), LOSS_KINDS),
    k: Number.isInteger(k) && k >= 1 ? Math.min(k, 100) : DEFAULT_K,
    kinds:
      kinds === null
        ? null
        : kinds
            .split(",")
            .map((s) => oneOf(s, TABLE_KINDS))
            .filter((s): s is NodeTableKind => s !== null),
    ablations: q
      .getAll("abl")
      .map(parseAblation)
      .filter((a): a is Ablation => a !== null),
    patches: q
      .getAll("patch")
      .map(parseAblation)
      .filter((a): a is Ablation => a !== null)
      .map(({ node, token }) => ({ node, token })),
    from: q.get("from"),
    trace: parseTrace(q.get("trace")),
    path: oneOf(q.get("path"), PATHS),
    compare: q.get("compare") === "1",
    vs: q.get("vs"),
    sort: oneOf(q.get("sort"), COLUMNS) ?? "actTimesGrad",
  });
}

export function writePromptRoute(route: PromptRoute, q: URLSearchParams): void {
  q.set("prompt", route.text);
  for (const t of route.target) q.append("target", t);
  for (const d of route.distractor) q.append("distractor", d);
  if (route.loss !== null) q.set("loss", route.loss);
  if (route.k !== DEFAULT_K) q.set("k", String(route.k));
  if (route.kinds !== null) q.set("kinds", route.kinds.join(","));
  for (const a of route.ablations) q.append("abl", writeAblation(a));
  for (const p of route.patches) q.append("patch", writeNodeAt(p));
  if (route.from !== null) q.set("from", route.from);
  if (route.trace !== null) q.set("trace", writeTrace(route.trace));
  if (route.path !== null) q.set("path", route.path);
  if (route.compare) q.set("compare", "1");
  if (route.vs !== null) q.set("vs", route.vs);
  if (route.sort !== "actTimesGrad") q.set("sort", route.sort);
}

/** The ablations and patches as the server takes them. */
export function ablationInputs(route: PromptRoute): AblationInput[] {
  const tokens = (t: number | null) => (t === null ? null : [t]);
  return [
    ...route.ablations.map((a) => ({ nodeId: a.node, tokenIndices: tokens(a.token), value: a.value })),
    ...route.patches.map((p) => ({ nodeId: p.node, tokenIndices: tokens(p.token), fromPrompt: route.from ?? route.text })),
  ];
}

/** What the backward pass differentiates: the traced node, else the loss; null when the page has neither yet. */
export function targetInput(route: PromptRoute): TargetInput | null {
  if (route.trace === null && route.target.length === 0 && route.loss === null) return null;
  return {
    loss: route.loss,
    targetTokens: route.target.length > 0 ? route.target : null,
    distractorTokens: route.distractor.length > 0 ? route.distractor : null,
    ...(route.trace === null
      ? {}
      : { node: route.trace.node, token: route.trace.token, keyToken: route.trace.keyToken, attentionPath: route.path }),
  };
}

export function sameNodeAt(a: NodeAt, b: NodeAt): boolean {
  return a.node === b.node && a.token === b.token;
}
