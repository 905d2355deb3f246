/** The GraphQL endpoint of the server that served this page: same origin, `/graphql`, ws(s) for subscriptions. */
export interface GraphqlUrls {
  http: string;
  ws: string;
}

export function graphqlUrls(location: Location = window.location): GraphqlUrls {
  const http = new URL("/graphql", location.href);
  const ws = new URL(http.href);
  ws.protocol = http.protocol === "https:" ? "wss:" : "ws:";
  return { http: http.href, ws: ws.href };
}
