import type { NodeKind } from "../../generated/hooks";
import { useLogitLensQuery, useModelInfoQuery } from "../../generated/hooks";
import { ErrorView } from "../ErrorView";
import { formatNumber } from "../tokens/Tokens";

interface TokenValue {
  token: string;
  value: number;
}

function TokenList({ title, tokens, testId }: { title: string; tokens: TokenValue[] | null | undefined; testId: string }) {
  if (!tokens) return null;
  return (
    <div data-testid={testId}>
      <div className="muted">{title}</div>
      <ol>
        {tokens.map((t, i) => (
          <li key={i} data-testid="lens-token" data-token={t.token} data-value={t.value}>
            <code>{JSON.stringify(t.token)}</code>
            <span className="value">{formatNumber(t.value)}</span>
          </li>
        ))}
      </ol>
    </div>
  );
}

/**
 * The debugger's weight-based logit lens (no prompt): the tokens the node's write promotes and suppresses
 * (`outputTokens`), and the token embeddings that excite it (`inputTokens`; a head's through its query
 * and its key side). Only what the kind has is asked: a head has no single write, an attention latent
 * no input tokens. It reads the live model's weights: a server serving stored data only says so instead.
 */
export function LogitLens({ id, kind }: { id: string; kind: NodeKind }) {
  const head = kind === "ATTENTION_HEAD";
  const [{ data: info }] = useModelInfoQuery();
  const running = info?.modelInfo.running === true;
  const [{ data, error, fetching }] = useLogitLensQuery({
    variables: { id, k: 10, output: !head, input: kind === "MLP_NEURON" || kind === "MLP_AUTOENCODER_LATENT", headInput: head },
    pause: !running,
  });
  const lens = data?.node;
  return (
    <section className="panel" data-testid="logit-lens">
      <h2>Logit lens</h2>
      <div className="muted">
        {running
          ? "From the weights, through the unembedding with the final LayerNorm's gain (no prompt)."
          : "Needs the live model's weights; this server serves stored data only."}
      </div>
      {fetching && !lens && <div className="muted">Reading the weights…</div>}
      {error && <ErrorView error={error} />}
      {lens && (
        <div className="lens">
          <TokenList title="output tokens it promotes" tokens={lens.upvoted} testId="lens-upvoted" />
          <TokenList title="output tokens it suppresses" tokens={lens.downvoted} testId="lens-downvoted" />
          <TokenList title="input tokens that excite it" tokens={lens.inputTokens} testId="lens-input" />
          <TokenList title="input tokens, as the query (Q)" tokens={lens.queryInputTokens} testId="lens-input-q" />
          <TokenList title="input tokens, as the key (K)" tokens={lens.keyInputTokens} testId="lens-input-k" />
        </div>
      )}
    </section>
  );
}
