import { createClient as createWsClient } from "graphql-ws";
import { Client, cacheExchange, fetchExchange, subscriptionExchange } from "urql";

import { graphqlUrls } from "./urls";

/**
 * One urql client for the page: queries and mutations over HTTP POST, subscriptions (job events) over a
 * single graphql-ws WebSocket to the same `/graphql` path. The socket is opened lazily on the first
 * subscription and retried, so a page with no running job never holds one open.
 */
export function createGraphqlClient(): Client {
  const urls = graphqlUrls();
  const ws = createWsClient({ url: urls.ws, lazy: true, retryAttempts: 5 });
  return new Client({
    url: urls.http,
    preferGetMethod: false,
    exchanges: [
      cacheExchange,
      fetchExchange,
      subscriptionExchange({
        forwardSubscription(request) {
          const input = { ...request, query: request.query ?? "" };
          return {
            subscribe(sink) {
              const dispose = ws.subscribe(input, sink);
              return { unsubscribe: dispose };
            },
          };
        },
      }),
    ],
  });
}
