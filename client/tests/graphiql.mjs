// GraphiQL at GET /graphql renders from the server's own assets (no request may leave the machine) and
// executes a query typed into its editor. Env: BASE_URL, QUERY (default `{ modelInfo { modelName } }`),
// EXPECT (a string the response must contain, default `"modelName"`), SCREENSHOT_DIR.
import { BASE_URL, check, withBrowser } from "./browser.mjs";

const QUERY = process.env.QUERY ?? "query Probe { modelInfo { modelName } }";
const EXPECT = process.env.EXPECT ?? '"modelName"';

await withBrowser(async (page, session) => {
  const response = await page.goto(`${BASE_URL}/graphql`);
  check(response?.ok(), `GET /graphql answered ${response?.status()}`);
  // The query editor is a Monaco instance: wait for it to be interactive, then replace its text.
  const editor = page.locator(".graphiql-query-editor .monaco-editor").first();
  await editor.waitFor({ state: "visible" });
  await page.locator(".graphiql-query-editor .view-lines").first().click();
  await page.keyboard.press("ControlOrMeta+A");
  await page.keyboard.press("Delete");
  await page.keyboard.insertText(QUERY);
  await page.locator(".graphiql-execute-button").click();
  const result = page.locator(".graphiql-response .view-lines").first();
  await result.filter({ hasText: EXPECT.replace(/"/g, "") }).waitFor({ state: "visible" });
  const text = (await result.innerText()).replace(/\u00a0/g, " ");
  check(text.includes(EXPECT), `response does not contain ${EXPECT}: ${text}`);
  // Let Monaco's workers (syntax validation, schema-aware completion) start and fetch the schema.
  await page.waitForTimeout(1000);
  await session.screenshot("graphiql");
  const path = (u) => new URL(u).pathname;
  session.findings.response = text;
  session.findings.assets = [...new Set(session.requests.map(path))].sort();
  session.findings.workers = session.findings.assets.filter((p) => p.includes("/workers/"));
});
