// Workers first: Monaco reads MonacoEnvironment when the editor module initialises.
import "./workers";
import "graphiql/style.css";

import { createGraphiQLFetcher } from "@graphiql/toolkit";
import { GraphiQL } from "graphiql";
import { createClient } from "graphql-ws";
import { StrictMode } from "react";
import { createRoot } from "react-dom/client";

import { graphqlUrls } from "../shared/urls";

/** Runs as it stands on any server (a test runs it in Chromium): what model and data are here. */
export const DEFAULT_QUERY = `# neuron-explainer: run this with the ▶ button (Ctrl-Enter); the Docs pane lists every field.
# A node id is model/kind/layer/index, e.g. tiny-gpt2/mlp_neuron/1/37 on the embedded default:
#   { node(id: "tiny-gpt2/mlp_neuron/1/37") { maxActivation topActivations(first: 3) { tokens activations } } }
query Welcome {
  modelInfo {
    modelName
    nLayers
    dMlp
    nHeads
    running
    mlpAutoencoderName
    attentionAutoencoderName
  }
  datasets {
    name
    kind
  }
}
`;

const urls = graphqlUrls();
// Subscriptions (jobEvents) go over graphql-ws on the same /graphql path; queries and mutations over HTTP.
const fetcher = createGraphiQLFetcher({
  url: urls.http,
  wsClient: createClient({ url: urls.ws, lazy: true }),
});

const container = document.getElementById("graphiql");
if (container === null) throw new Error("graphiql: #graphiql is missing from index.html");
createRoot(container).render(
  <StrictMode>
    <GraphiQL fetcher={fetcher} defaultQuery={DEFAULT_QUERY} />
  </StrictMode>,
);
