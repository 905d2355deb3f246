import { linkProps } from "../routing";
import { promptRoute } from "../prompt/promptRoute";
import { argmax } from "../tokens/Tokens";
import { strongestQuery } from "./Attention";

/**
 * "Trace this node on a prompt": the prompt page with the node as the target, at its strongest token of
 * a record (a head: its strongest (query, key) pair after the first query). Without `text`, the record's tokens are joined into
 * the prompt's text, which the server tokenizes again.
 */
export function TraceLink({
  id,
  text,
  tokens,
  activations,
  attentionRows,
  label = "trace this node on a prompt",
  testId = "trace-link",
}: {
  id: string;
  text?: string;
  tokens: readonly string[];
  activations: readonly number[];
  attentionRows: readonly (readonly number[])[] | null;
  label?: string;
  testId?: string;
}) {
  if (tokens.length === 0) return null;
  let token: number;
  let keyToken: number | null = null;
  if (attentionRows !== null) {
    // Query 0 attends only to itself (always 1): the strongest pair among the later queries.
    token = attentionRows.length > 1 ? 1 + strongestQuery(attentionRows.slice(1)) : 0;
    keyToken = argmax(attentionRows[token] ?? [0]);
  } else {
    token = argmax(activations);
  }
  const route = promptRoute(text ?? tokens.join(""), { trace: { node: id, token, keyToken } });
  return (
    <a data-testid={testId} {...linkProps(route)} title={`the prompt page, differentiating ${id} at token ${token}`}>
      {label}
    </a>
  );
}
