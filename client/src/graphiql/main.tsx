// Workers first: Monaco reads MonacoEnvironment when the editor module initialises.
import "./workers";
import "graphiql/style.css";

import { createGraphiQLFetcher } from "@graphiql/toolkit";
import { GraphiQL } from "graphiql";
import { createClient } from "graphql-ws";
import { StrictMode } from "react";
import { createRoot } from "react-dom/client";

import { graphqlUrls } from "../shared/urls";

const DEFAULT_QUERY = `# neuron-explainer: try a node of the loaded model, e.g.
query Example {
  modelInfo {
    name
    nLayers
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
