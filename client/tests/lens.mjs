// The node page's logit lens (output tokens promoted and suppressed, input tokens; a head's through Q and
// K) and its link to trace the node on a prompt, which opens the prompt page traced from that node.
// Env: BASE_URL, NODE_ID, SHOT (screenshot name).
import { BASE_URL, check, required, withBrowser } from "./browser.mjs";

const NODE_ID = required("NODE_ID");
const SHOT = process.env.SHOT ?? "node-logit-lens";

await withBrowser(async (page, session) => {
  const f = session.findings;
  await page.goto(`${BASE_URL}/?node=${encodeURIComponent(NODE_ID)}`);
  await page.getByTestId("node-panel").waitFor();
  const lens = page.getByTestId("logit-lens");
  await lens.getByTestId("lens-token").first().waitFor();
  f.lists = {};
  for (const id of ["lens-upvoted", "lens-downvoted", "lens-input", "lens-input-q", "lens-input-k"]) {
    const list = lens.getByTestId(id);
    if ((await list.count()) === 0) continue;
    f.lists[id] = await list
      .getByTestId("lens-token")
      .evaluateAll((els) => els.map((e) => ({ token: e.dataset.token, value: Number(e.dataset.value) })));
  }
  f.lensErrors = await lens.getByTestId("error").count();
  await lens.scrollIntoViewIfNeeded();
  await session.screenshot(SHOT);

  // "Trace this node on its top record": the prompt page, targeting this node.
  const link = page.getByTestId("trace-link");
  f.traceHref = await link.getAttribute("href");
  await link.click();
  await page.waitForFunction(() => {
    const el = document.querySelector("[data-testid=prompt-page]");
    return el !== null && el.dataset.ready === "1";
  });
  f.promptUrl = page.url();
  f.traceSummary = await page.getByTestId("trace-summary").innerText();
  f.tracedRows = await page.getByTestId("prompt-row").count();
  f.errors = await page.getByTestId("error").allInnerTexts();
  const fatal = await page.evaluate(() => window.__viewerFatalErrors ?? []);
  check(fatal.length === 0, `unhandled errors on the page: ${JSON.stringify(fatal)}`);
});
