// The graphql-http audit suite (the GraphQL-over-HTTP reference implementation's) against a running server.
// Env: URL (the GraphQL endpoint). Prints one JSON line: every audit's id, name, status and failure reason.
import { auditServer } from "graphql-http";

const url = process.env.URL;
if (!url) throw new Error("set URL to the GraphQL endpoint");
const results = await auditServer({ url });
const out = [];
for (const r of results) {
  const row = { id: r.id, name: r.name, status: r.status };
  if (r.status !== "ok") {
    row.reason = r.reason;
    if (r.response) row.response = { status: r.response.status, body: (await r.response.text()).slice(0, 300) };
  }
  out.push(row);
}
console.log(JSON.stringify(out));
