// The attention head page: the strongest pair of each record; the selected record in detail, where a
// picked query token colours the keys it attends to; the pattern as a query × key heatmap; the
// selection in the URL. Env: BASE_URL, NODE_ID (a head), PICK_QUERY (token index to pick), SHOT.
import { BASE_URL, check, required, withBrowser } from "./browser.mjs";

const NODE_ID = required("NODE_ID");
const PICK_QUERY = Number(process.env.PICK_QUERY ?? "3");
const SHOT = process.env.SHOT ?? "viewer-head";

const valuesOf = (locator) => locator.evaluateAll((els) => els.map((e) => Number(e.dataset.activation)));

await withBrowser(async (page, session) => {
  const f = session.findings;
  await page.goto(`${BASE_URL}/?node=${encodeURIComponent(NODE_ID)}`);
  const panel = page.getByTestId("node-panel");
  await panel.or(page.getByTestId("error")).first().waitFor();
  if (!(await panel.isVisible())) check(false, `node page shows an error: ${await page.getByTestId("error").first().innerText()}`);
  check((await panel.getAttribute("data-typename")) === "AttentionHead", "not an attention head page");

  // Default: the top record in detail, its strongest pair's query selected.
  const detail = page.getByTestId("attention-detail");
  await detail.waitFor();
  f.defaultRecord = await detail.getAttribute("data-record");
  f.defaultQuery = Number(await detail.getAttribute("data-query"));
  f.matrixCells = await detail.getByTestId("attention-matrix").locator("rect").count();
  f.topRecordStrongest = await page.getByTestId("top-activations").getByTestId("record").first().getAttribute("data-max-index");
  f.topRecordValues = await valuesOf(page.getByTestId("top-activations").getByTestId("record").first().getByTestId("token"));
  await session.screenshot(`${SHOT}`);

  // Pick a query token in the detail strip: its keys light up, and `q=` goes into the URL.
  await detail.getByTestId("attention-keys").getByTestId("token").nth(PICK_QUERY).click();
  await page.waitForURL(new RegExp(`q=${PICK_QUERY}(&|$)`));
  await page.waitForFunction((q) => document.querySelector("[data-testid=attention-detail]")?.getAttribute("data-query") === String(q), PICK_QUERY);
  f.pickedKeys = await valuesOf(detail.getByTestId("attention-keys").getByTestId("token"));
  f.selectedRowCells = await detail.locator("rect.selected-row").count();
  f.urlAfterPick = page.url();
  await session.screenshot(`${SHOT}-query-picked`);

  // A token of a random record: that record in detail, its query picked (rec=random:N).
  const RANDOM_RECORD = Number(process.env.RANDOM_RECORD ?? "1");
  const randomRecord = page.getByTestId("random-sample").getByTestId("record").nth(RANDOM_RECORD);
  const token = randomRecord.getByTestId("token").nth(Number(process.env.RANDOM_PICK ?? "5"));
  f.randomPick = Number(await token.getAttribute("data-index"));
  await token.click();
  await page.waitForURL(new RegExp(`rec=random%3A${RANDOM_RECORD}`));
  await page.waitForFunction(
    (label) => document.querySelector("[data-testid=attention-detail]")?.getAttribute("data-record") === label,
    `random record ${RANDOM_RECORD}`,
  );
  f.randomQuery = Number(await detail.getAttribute("data-query"));
  f.randomKeys = await valuesOf(detail.getByTestId("attention-keys").getByTestId("token"));

  // Reload: the same record and query come back from the URL.
  await page.reload();
  await detail.waitFor();
  f.afterReload = { record: await detail.getAttribute("data-record"), query: Number(await detail.getAttribute("data-query")) };
  const fatal = await page.evaluate(() => window.__viewerFatalErrors ?? []);
  check(fatal.length === 0, `unhandled errors on the page: ${JSON.stringify(fatal)}`);
});
