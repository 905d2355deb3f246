// Home and browse pages: the layer grid leads to a layer's nodes (the `nodes` connection, a page at a
// time, cursors in the URL), next and previous pages, a row's link to its node, and jumping by id.
// Env: BASE_URL, KIND (e.g. MLP_NEURON), LAYER, JUMP_TO (a node id), SHOT.
import { BASE_URL, check, required, withBrowser } from "./browser.mjs";

const KIND = required("KIND");
const LAYER = required("LAYER");
const JUMP_TO = required("JUMP_TO");
const SHOT = process.env.SHOT ?? "viewer";

const rowIds = (page) => page.getByTestId("node-row").evaluateAll((els) => els.map((e) => e.dataset.nodeId));

async function waitRows(page, previous) {
  await page.waitForFunction(
    (prev) => {
      const rows = [...document.querySelectorAll("[data-testid=node-row]")].map((e) => e.dataset.nodeId);
      return rows.length > 0 && JSON.stringify(rows) !== prev;
    },
    JSON.stringify(previous ?? []),
  );
  // every row's own query answered
  await page.waitForFunction(() => [...document.querySelectorAll("[data-testid=row-max]")].every((e) => e.textContent !== "…"));
}

await withBrowser(async (page, session) => {
  const f = session.findings;
  await page.goto(`${BASE_URL}/`);
  await page.getByTestId("layer-grid").waitFor();
  await session.screenshot(`${SHOT}-home`);
  await page.getByTestId(`browse-${KIND}-${LAYER}`).click();
  await page.getByTestId("node-table").waitFor();
  await waitRows(page);
  f.firstPage = await rowIds(page);
  f.firstMax = await page.getByTestId("row-max").allInnerTexts();
  f.urlFirst = page.url();
  f.previousDisabled = await page.getByTestId("page-previous").isDisabled();
  await session.screenshot(`${SHOT}-browse`);

  await page.getByTestId("page-next").click();
  await waitRows(page, f.firstPage);
  f.secondPage = await rowIds(page);
  f.urlSecond = page.url();
  await page.getByTestId("page-previous").click();
  await waitRows(page, f.secondPage);
  f.backPage = await rowIds(page);
  f.urlBack = page.url();

  // Reload on the second page: the cursor in the URL brings it back.
  await page.goto(f.urlSecond);
  await waitRows(page);
  f.secondAfterReload = await rowIds(page);

  // A row's link opens its node.
  await page.getByTestId("node-row").first().locator("a").click();
  await page.getByTestId("node-panel").waitFor();
  f.rowLinkNode = await page.getByTestId("node-panel").getAttribute("data-node-id");

  // Jump by id from the header.
  await page.getByTestId("node-input").fill(JUMP_TO);
  await page.getByTestId("node-open").click();
  await page.waitForFunction((id) => document.querySelector("[data-testid=node-panel]")?.getAttribute("data-node-id") === id, JUMP_TO);
  f.jumpedTo = await page.getByTestId("node-panel").getAttribute("data-node-id");
  const fatal = await page.evaluate(() => window.__viewerFatalErrors ?? []);
  check(fatal.length === 0, `unhandled errors on the page: ${JSON.stringify(fatal)}`);
  // The favicon the page links to is served (no 404 per page).
  const href = await page.locator("link[rel=icon]").getAttribute("href");
  // (Chromium aborts a navigation to /favicon.ico under request routing, so fetch it as the browser's context.)
  const icon = await page.request.get(new URL(href ?? "/favicon.ico", BASE_URL).href);
  f.favicon = { href, status: icon.status(), type: icon.headers()["content-type"] };
});
