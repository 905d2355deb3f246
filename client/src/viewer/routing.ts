import { type MouseEvent, useCallback, useEffect, useState } from "react";

import type { NodeKind } from "../generated/hooks";
import { type PromptRoute, parsePromptRoute, writePromptRoute } from "./prompt/promptRoute";

/**
 * Every page's state lives in the URL's query string, so any view can be linked, reloaded or gone back
 * to. One route per page; a new page is one more member here, one case in `parseRoute` /
 * `routeToSearch`, and one entry in App's page table. The prompt page's state is in `prompt/promptRoute.ts`.
 */
export type Route =
  | { page: "home" }
  | PromptRoute
  | {
      page: "node";
      id: string;
      /** Records shown in full instead of centred on their max token. */
      full: boolean;
      top: number;
      random: number;
      /** Attention heads: the selected record ("top:3", "random:0", "live") and query token. */
      record: string | null;
      query: number | null;
      /** A job this page started (explain or score), followed until it ends, also after a reload. */
      job: string | null;
      prompt: string | null;
    }
  | {
      page: "browse";
      model: string;
      kind: NodeKind;
      layer: number;
      autoencoder: string | null;
      after: string | null;
      before: string | null;
    };

export const NODE_KINDS: readonly NodeKind[] = [
  "MLP_NEURON",
  "ATTENTION_HEAD",
  "MLP_AUTOENCODER_LATENT",
  "ATTENTION_AUTOENCODER_LATENT",
];

function integer(text: string | null, fallback: number, max = 1000): number {
  const n = text === null ? NaN : Number(text);
  return Number.isInteger(n) && n >= 0 ? Math.min(n, max) : fallback;
}

export function parseRoute(search: string): Route {
  const q = new URLSearchParams(search);
  const node = q.get("node");
  if (node !== null && node.trim() !== "") {
    const query = q.get("q");
    return {
      page: "node",
      id: node.trim(),
      full: q.get("view") === "full",
      top: integer(q.get("top"), 20, 200),
      random: integer(q.get("random"), 10, 200),
      record: q.get("rec"),
      query: query === null ? null : integer(query, 0, 100000),
      job: q.get("job"),
      prompt: q.get("prompt"),
    };
  }
  if (q.get("prompt") !== null) return parsePromptRoute(q);
  const kind = q.get("kind");
  if (q.get("browse") !== null && kind !== null && (NODE_KINDS as readonly string[]).includes(kind)) {
    return {
      page: "browse",
      model: q.get("browse") ?? "",
      kind: kind as NodeKind,
      layer: integer(q.get("layer"), 0, 10000),
      autoencoder: q.get("ae"),
      after: q.get("after"),
      before: q.get("before"),
    };
  }
  return { page: "home" };
}

export function routeToSearch(route: Route): string {
  const q = new URLSearchParams();
  if (route.page === "node") {
    q.set("node", route.id);
    if (route.full) q.set("view", "full");
    if (route.top !== 20) q.set("top", String(route.top));
    if (route.random !== 10) q.set("random", String(route.random));
    if (route.record !== null) q.set("rec", route.record);
    if (route.query !== null) q.set("q", String(route.query));
    if (route.job !== null) q.set("job", route.job);
    if (route.prompt !== null) q.set("prompt", route.prompt);
  } else if (route.page === "browse") {
    q.set("browse", route.model);
    q.set("kind", route.kind);
    q.set("layer", String(route.layer));
    if (route.autoencoder !== null) q.set("ae", route.autoencoder);
    if (route.after !== null) q.set("after", route.after);
    if (route.before !== null) q.set("before", route.before);
  } else if (route.page === "prompt") {
    writePromptRoute(route, q);
  }
  const text = q.toString();
  return text === "" ? "/" : `/?${text}`;
}

export function nodeRoute(id: string, extra: Partial<Extract<Route, { page: "node" }>> = {}): Route {
  return { page: "node", id, full: false, top: 20, random: 10, record: null, query: null, job: null, prompt: null, ...extra };
}

export function browseRoute(model: string, kind: NodeKind, layer: number, autoencoder: string | null = null): Route {
  return { page: "browse", model, kind, layer, autoencoder, after: null, before: null };
}

/** A node id's parts, as the server writes them (`model/kind-or-autoencoder/layer/index`). */
export function splitNodeId(id: string): { model: string; segment: string; layer: number; index: number } | null {
  const parts = id.split("/");
  if (parts.length !== 4) return null;
  const [model, segment, layer, index] = parts as [string, string, string, string];
  if (!/^\d+$/.test(layer) || !/^\d+$/.test(index)) return null;
  return { model, segment, layer: Number(layer), index: Number(index) };
}

const listeners = new Set<() => void>();

/** Go to a route: a new history entry (`replace`: the same one, for state that should not pile up). */
export function navigate(route: Route, replace = false): void {
  const url = routeToSearch(route);
  if (replace) window.history.replaceState(null, "", url);
  else window.history.pushState(null, "", url);
  for (const listener of listeners) listener();
}

/** The current route, following pushes and the back/forward buttons. */
export function useRoute(): Route {
  const [search, setSearch] = useState(window.location.search);
  const sync = useCallback(() => setSearch(window.location.search), []);
  useEffect(() => {
    listeners.add(sync);
    window.addEventListener("popstate", sync);
    return () => {
      listeners.delete(sync);
      window.removeEventListener("popstate", sync);
    };
  }, [sync]);
  return parseRoute(search);
}

/** A link that navigates inside the viewer (a plain link for a new tab, ctrl/cmd-click, middle click). */
export function linkProps(route: Route): { href: string; onClick: (e: MouseEvent) => void } {
  return {
    href: routeToSearch(route),
    onClick: (e) => {
      if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
      e.preventDefault();
      navigate(route);
      window.scrollTo(0, 0);
    },
  };
}
