import type { CombinedError } from "urql";

/** One error as the page shows it: a headline for the code, the server's message, and its fields. */
export interface ReadableError {
  code: string;
  title: string;
  message: string;
  details: [string, string][];
}

/** Headlines for the `extensions.code` values the server documents (DESIGN.md, "Errors"). */
const TITLES: Record<string, string> = {
  BAD_USER_INPUT: "That input is not valid",
  NOT_FOUND: "Not found",
  MODEL_NOT_LOADED: "No model is loaded on this server",
  LLM_NOT_CONFIGURED: "No LLM is configured on this server",
  LLM_BAD_REPLY: "The LLM's reply could not be used",
  UPSTREAM_UNAVAILABLE: "A service the server depends on is unavailable",
  LIMIT_EXCEEDED: "The request is over a server limit",
  UNAUTHENTICATED: "Not signed in",
  CORRUPT_BLOB: "Stored data could not be read",
  GRAPHQL_VALIDATION_FAILED: "The page and the server disagree on the schema (rebuild the client)",
  INTERNAL_SERVER_ERROR: "The server failed",
  NETWORK: "Could not reach the server",
  CLIENT: "The page failed",
};

export function titleForCode(code: string): string {
  return TITLES[code] ?? `Error (${code})`;
}

function detailValue(value: unknown): string {
  if (Array.isArray(value)) return value.map(detailValue).join(", ");
  if (value !== null && typeof value === "object") return JSON.stringify(value);
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
