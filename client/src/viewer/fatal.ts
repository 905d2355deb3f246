import { useSyncExternalStore } from "react";

import { type ReadableError, readableThrown } from "../shared/errors";

/**
 * Errors nobody handled: uncaught exceptions and unhandled promise rejections. They are shown in a banner
 * (never a blank page) and counted on `window.__viewerFatalErrors`, which the browser tests assert is empty.
 */
let fatal: ReadableError[] = [];
const listeners = new Set<() => void>();

declare global {
  interface Window {
    __viewerFatalErrors?: ReadableError[];
  }
}

export function reportFatal(reason: unknown): void {
  fatal = [...fatal, readableThrown(reason)];
  window.__viewerFatalErrors = fatal;
  for (const listener of listeners) listener();
}

export function installGlobalErrorHandlers(): void {
  window.__viewerFatalErrors = fatal;
  window.addEventListener("unhandledrejection", (event) => reportFatal(event.reason));
  window.addEventListener("error", (event) => reportFatal(event.error ?? event.message));
}

function subscribe(listener: () => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export function useFatalErrors(): ReadableError[] {
  return useSyncExternalStore(subscribe, () => fatal);
}
