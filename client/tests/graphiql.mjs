// GraphiQL at GET /graphql renders from the server's own assets (no request may leave the machine) and
// executes a query typed into its editor; optionally then a subscription, over the same /graphql WebSocket.
// Env: BASE_URL, QUERY, EXPECT (a string the response must contain), SUBSCRIPTION + EXPECT_SUBSCRIPTION
// (optional), SCREENSHOT_DIR.
import { BASE_URL, check, withBrowser } from "./browser.mjs";

// QUERY "default": run the query GraphiQL opens with, as it stands (a first-time user's first click).
const QUERY = process.env.QUERY ?? "query Probe { modelInfo { modelName } }";
const EXPECT = process.env.EXPECT ?? '"modelName"';

const SUBSCRIPTION = process.env.SUBSCRIPTION;
const session_default = {};
const EXPECT_SUBSCRIPTION = process.env.EXPECT_SUBSCRIPTION ?? "";

/** Replaces the query editor's text (a Monaco instance), runs it, and waits for `expect` in the response. */
/** Runs what the editor holds and waits for `expect` in the response; returns the response text. */
async function run(page, expect) {
  await page.locator(".graphiql-execute-button").click();
  const result = page.locator(".graphiql-response .view-lines").first();
  // Monaco renders the response in its own spans; poll its text until the expected fragment appears.
  const deadline = Date.now() + 60_000;
  let text = "";
  while (Date.now() < deadline) {
    text = (await result.innerText().catch(() => "")).replace(/\u00a0/g, " ");
    if (text.includes(expect)) break;
    await page.waitForTimeout(200);
  }
  check(text.includes(expect), `response does not contain ${expect}: ${text}`);
  return text;
}

async function execute(page, operation, expect) {
  if (operation === "default") {
    const editor = await page.locator(".graphiql-query-editor .view-lines").first().innerText();
    session_default.editor = editor.replace(/\u00a0/g, " ");
    return run(page, expect);
  }
  await page.locator(".graphiql-query-editor .view-lines").first().click();
  await page.keyboard.press("ControlOrMeta+A");
  await page.keyboard.press("Delete");
  await page.keyboard.insertText(operation);
  // GraphiQL picks up the operation name after a debounce; running before then sends the previous name
  // (a 400 from the server). The active tab is titled with the name once it is current.
  const name = /^\s*(?:query|mutation|subscription)\s+(\w+)/.exec(operation)?.[1];
  check(name !== undefined, `give the operation a name: ${operation}`);
  await page.locator(".graphiql-tab-active").filter({ hasText: name }).waitFor();
  return run(page, expect);
}

await withBrowser(async (page, session) => {
  const response = await page.goto(`${BASE_URL}/graphql`);
  check(response?.ok(), `GET /graphql answered ${response?.status()}`);
  await page.locator(".graphiql-query-editor .monaco-editor").first().waitFor({ state: "visible" });
  const text = await execute(page, QUERY, EXPECT);
  // Let Monaco's workers (syntax validation, schema-aware completion) start and fetch the schema.
  await page.waitForTimeout(1000);
  await session.screenshot(QUERY === "default" ? "graphiql-default-query" : "graphiql");
  const path = (u) => new URL(u).pathname;
  session.findings.response = text;
  session.findings.defaultEditor = session_default.editor ?? null;
  session.findings.assets = [...new Set(session.requests.map(path))].sort();
  session.findings.workers = session.findings.assets.filter((p) => p.includes("/workers/"));
  if (SUBSCRIPTION) {
    session.findings.subscriptionResponse = await execute(page, SUBSCRIPTION, EXPECT_SUBSCRIPTION);
    await session.screenshot("graphiql-subscription");
  }
});
