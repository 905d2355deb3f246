import type { CombinedError } from "urql";

import type { ErrorCode } from "../generated/graphql";

/** One error as the page shows it: a headline for the code, the server's message, and its fields. */
export interface ReadableError {
  code: string;
  title: string;
  message: string;
  details: [string, string][];
}

/** What the page itself may report besides the server's codes. */
type PageCode = "NETWORK" | "CLIENT";

/** A headline for every `extensions.code` in the SDL's `ErrorCode` enum: a code added there fails tsc here. */
const TITLES: Record<ErrorCode | PageCode, string> = {
  BAD_USER_INPUT: "That input is not valid",
  NOT_FOUND: "Not found",
  MODEL_NOT_LOADED: "No model is loaded on this server",
  LLM_NOT_CONFIGURED: "No LLM is configured on this server",
  LLM_BAD_REPLY: "The LLM's reply could not be used",
  UPSTREAM_UNAVAILABLE: "A service the server depends on is unavailable",
  LIMIT_EXCEEDED: "The request is over a server limit",
  UNAUTHENTICATED: "Not signed in",
  CORRUPT_DATA: "Stored data could not be read",
  NOT_READY: "The server is still starting",
  INTERRUPTED: "The server stopped before the job ended (ask again to resume it)",
  GRAPHQL_VALIDATION_FAILED: "The page and the server disagree on the schema (rebuild the client)",
  INTERNAL_SERVER_ERROR: "The server failed",
  NETWORK: "Could not reach the server",
  CLIENT: "The page failed",
};

export function titleForCode(code: string): string {
  return (TITLES as Record<string, string>)[code] ?? `Error (${code})`;
}

function detailValue(value: unknown): string {
  if (Array.isArray(value)) return value.map(detailValue).join(", ");
  if (value !== null && typeof value === "object") return JSON.stringify(value);
  // A token's leading space is part of it (" Mary"): quote a string that starts or ends with whitespace.
  if (typeof value === "string" && value !== value.trim()) return JSON.stringify(value);
  return String(value);
}

/** Turns an urql `CombinedError` (GraphQL errors with `extensions`, or a network error) into readable errors. */
export function readableErrors(error: CombinedError): ReadableError[] {
  if (error.networkError) {
    return [{ code: "NETWORK", title: titleForCode("NETWORK"), message: error.networkError.message, details: [] }];
  }
  return error.graphQLErrors.map((e) => {
    const extensions = e.extensions ?? {};
    const code = typeof extensions["code"] === "string" ? extensions["code"] : "INTERNAL_SERVER_ERROR";
    const details = Object.entries(extensions)
      .filter(([key]) => key !== "code" && key !== "requestId" && key !== "request_id")
      .map(([key, value]): [string, string] => [key, detailValue(value)]);
    const requestId = extensions["requestId"] ?? extensions["request_id"];
    if (requestId !== undefined) details.push(["request id", detailValue(requestId)]);
    return { code, title: titleForCode(code), message: e.message, details };
  });
}

/** A thrown value of any kind (an unhandled rejection's reason, say) as a readable error. */
export function readableThrown(reason: unknown): ReadableError {
  const message = reason instanceof Error ? reason.message : detailValue(reason);
  return { code: "CLIENT", title: titleForCode("CLIENT"), message, details: [] };
}
