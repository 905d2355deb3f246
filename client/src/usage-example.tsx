import { Client, Provider, cacheExchange, fetchExchange, subscriptionExchange } from "urql";
import { createClient as createWsClient } from "graphql-ws";
import { useNodePageQuery, useJobEventsSubscription } from "./generated/hooks";

const ws = createWsClient({ url: "ws://localhost:8000/graphql" });
const client = new Client({
  url: "http://localhost:8000/graphql",
  exchanges: [
    cacheExchange,
    fetchExchange,
    subscriptionExchange({
      forwardSubscription: (request) => ({
        subscribe: (sink) => ({ unsubscribe: ws.subscribe({ ...request, query: request.query ?? "" }, sink) }),
      }),
    }),
  ],
});

function TopRecords({ id }: { id: string }) {
  const [{ data, error, fetching }] = useNodePageQuery({ variables: { id, first: 5, source: "AUTO" } });
  if (fetching) return <p>Loading…</p>;
  // Typed errors carry extensions.code: NOT_FOUND, BAD_USER_INPUT, MODEL_NOT_LOADED, ...
  if (error) return <p>{error.graphQLErrors.map((e) => `${e.extensions.code}: ${e.message}`).join("; ")}</p>;
  return (
    <ul>
      {data?.node?.topActivations.map((r, i) => (
        <li key={i}>{r.tokens.join("")} (max {Math.max(...r.activations).toFixed(2)})</li>
      ))}
    </ul>
  );
}

function ScoreProgress({ jobId }: { jobId: string }) {
  // The subscription replays the job's event log, then follows it; `after` resumes from a seq.
  const [{ data }] = useJobEventsSubscription({ variables: { jobId } });
  const event = data?.jobEvents;
  if (event?.__typename === "JobProgress") return <progress value={event.done} max={event.total} />;
  if (event?.__typename === "JobCompleted") return <p>score {event.score}</p>;
  return null;
}

export const App = () => (
  <Provider value={client}>
    <TopRecords id="tiny-gpt2/mlp_neuron/1/37" />
  </Provider>
);
