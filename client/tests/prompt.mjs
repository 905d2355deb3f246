// The prompt page (TDB's main view): the node table for a prompt and target; a row's click ablates,
// patches or traces it (each a new URL and exactly one GraphQL request); two conditions side by side;
// back, forward and reload restore the state from the URL; a target that is not one token is a readable
// BAD_USER_INPUT. Env: BASE_URL, PROMPT, TARGET, DISTRACTOR, FROM (a patch prompt of the same length),
// BAD_TARGET, LAST_LAYER (the model's last layer), README_URLS (JSON: the README's prompt-page links). Prints every table it saw, for the pytest side to compare with the server's own answers.
import { BASE_URL, check, required, withBrowser } from "./browser.mjs";

const PROMPT = required("PROMPT");
const TARGET = required("TARGET");
const DISTRACTOR = required("DISTRACTOR");
const FROM = required("FROM");
const BAD_TARGET = required("BAD_TARGET");
const LAST_LAYER = required("LAST_LAYER");
const README_URLS = JSON.parse(process.env.README_URLS ?? "[]");

function pageUrl(params) {
  const q = new URLSearchParams();
  for (const [key, value] of params) q.append(key, value);
  return `${BASE_URL}/?${q.toString()}`;
}

/** The page shows the answer to its current URL (not a stale one, not still fetching). */
async function settled(page) {
  await page.waitForFunction(() => {
    const el = document.querySelector("[data-testid=prompt-page]");
    return el !== null && el.dataset.ready === "1" && el.dataset.url === window.location.pathname + window.location.search;
  });
}

/** Every row of the table as the page shows it (raw values from data-value). */
async function tableRows(page) {
  return page.getByTestId("prompt-row").evaluateAll((rows) =>
    rows.map((row) => {
      const cells = {};
      for (const cell of row.querySelectorAll("td[data-testid^=cell-]")) {
        cells[cell.dataset.testid.slice(5)] = cell.dataset.value === undefined ? null : Number(cell.dataset.value);
      }
      return {
        kind: row.dataset.kind,
        node: row.dataset.nodeId === "" ? null : row.dataset.nodeId,
        token: Number(row.dataset.token),
        keyToken: row.dataset.keyToken === "" ? null : Number(row.dataset.keyToken),
        ...cells,
      };
    }),
  );
}

async function state(page) {
  const strip = (id) =>
    page
      .getByTestId(id)
      .getByTestId("token")
      .evaluateAll((els) => els.map((e) => Number(e.dataset.activation)));
  const targetValue = page.getByTestId("target-value");
  return {
    url: page.url(),
    rows: await tableRows(page),
    attribution: await strip("attribution"),
    topLogits: await page
      .getByTestId("top-logits")
      .getByTestId("logit")
      .evaluateAll((els) => els.map((e) => e.dataset.token)),
    targetValue: (await targetValue.count()) > 0 ? Number(await targetValue.getAttribute("data-value")) : null,
  };
}

/** The first row of `kind` in the table's order. */
function rowOf(page, kind) {
  return page.locator(`[data-testid=prompt-row][data-kind=${kind}]`).first();
}

async function rowKey(row) {
  const key = await row.evaluate((r) => ({
    node: r.dataset.nodeId,
    token: Number(r.dataset.token),
    keyToken: r.dataset.keyToken === "" ? null : Number(r.dataset.keyToken),
  }));
  return key;
}

await withBrowser(async (page, session) => {
  const f = session.findings;
  // The error case asks the server for a target it refuses: a 4xx there is the expected answer.
  session.allowFailure = (r) => new URL(r.url).pathname === "/graphql" && r.status === 400;
  let posts = 0;
  page.on("request", (r) => {
    if (r.method() === "POST" && new URL(r.url()).pathname === "/graphql") posts += 1;
  });
  /** Runs `action` and returns how many GraphQL requests the page made for it, once it has settled. */
  const counted = async (action) => {
    posts = 0;
    await action();
    await settled(page);
    return posts;
  };

  // 1. The table for a prompt and a target.
  await page.goto(pageUrl([["prompt", PROMPT], ["target", TARGET], ["distractor", DISTRACTOR]]));
  await settled(page);
  await page.getByTestId("prompt-table").waitFor();
  f.initial = await state(page);
  f.tokens = JSON.parse(await page.getByTestId("prompt-tokens").getAttribute("data-tokens"));
  check(f.initial.rows.length > 0, "the node table is empty");
  await session.screenshot("prompt-table");

  // 2. Ablate the first MLP neuron row by a click: the URL gets it, one new query, a new table.
  const ablateRow = rowOf(page, "MLP_NEURON");
  f.ablated = await rowKey(ablateRow);
  f.ablateRequests = await counted(() => ablateRow.getByTestId("row-ablate").click());
  f.afterAblation = await state(page);
  f.ablationChips = await page.getByTestId("ablation").allInnerTexts();
  await session.screenshot("prompt-ablated");

  // 3. Patch another row from a clean prompt of the same length (typing the prompt is not a query).
  await page.getByTestId("prompt-from").fill(FROM);
  await page.getByTestId("prompt-submit").click();
  await page.waitForURL(/from=/);
  await settled(page);
  const patchRow = page.locator("[data-testid=prompt-row][data-kind=MLP_NEURON]:not(.ablated)").first();
  f.patched = await rowKey(patchRow);
  f.patchRequests = await counted(() => patchRow.getByTestId("row-patch").click());
  f.afterPatch = await state(page);
  await session.screenshot("prompt-patched");

  // 4. The kinds filter: heads only (each change one query), then trace from a head's (query, key) row:
  // the target becomes that attention logit.
  f.kindRequests = [
    await counted(() => page.getByTestId("kind-EMBEDDING").uncheck()),
    await counted(() => page.getByTestId("kind-MLP_NEURON").uncheck()),
  ];
  f.headsOnly = await state(page);
  // A head of the last layer, so that the earlier layer's heads have a gradient.
  const traceRow = page.locator(`[data-testid=prompt-row][data-node-id*="/attention_head/${LAST_LAYER}/"]`).first();
  f.traced = await rowKey(traceRow);
  f.traceRequests = await counted(() => traceRow.getByTestId("row-trace").click());
  f.afterTrace = await state(page);
  f.traceSummary = await page.getByTestId("trace-summary").innerText();
  await session.screenshot("prompt-traced");

  // 5. Two conditions side by side: without the ablations (left) and with them (right).
  f.compareRequests = await counted(() => page.getByTestId("compare-toggle").check());
  f.compare = await state(page);
  f.compareRight = await page
    .getByTestId("attribution-right")
    .getByTestId("token")
    .evaluateAll((els) => els.map((e) => Number(e.dataset.activation)));
  await session.screenshot("prompt-compare");

  // 6. Back: the traced table again (from the URL); forward: the comparison; reload keeps it.
  f.backRequests = await counted(() => page.goBack());
  f.afterBack = await state(page);
  await page.goForward();
  await settled(page);
  f.afterForward = await state(page);
  await page.reload();
  await settled(page);
  f.afterReload = await state(page);

  // 7. Sorting is view state: in the URL, no query.
  f.sortRequests = await counted(() => page.getByTestId("sort-directEffect").click());
  f.sortUrl = page.url();

  // 8. A row's node link opens its node page.
  await page.goBack();
  await settled(page);
  const link = page.getByTestId("row-node-link").first();
  f.linkedNode = await link.getAttribute("data-node-id");
  await link.click();
  await page.getByTestId("node-panel").waitFor();
  f.nodePageId = await page.getByTestId("node-panel").getAttribute("data-node-id");

  // 9. The README's links open as written: a table, no error.
  f.readme = [];
  for (const link of README_URLS) {
    await page.goto(`${BASE_URL}${link}`);
    await page.waitForFunction(() => document.querySelector("[data-testid=prompt-page]")?.dataset.ready === "1");
    f.readme.push({
      link,
      mode: await page.getByTestId("prompt-page").getAttribute("data-mode"),
      rows: await page.getByTestId("prompt-row").count(),
      errors: await page.getByTestId("error").allInnerTexts(),
    });
  }

  // 10. A target that is not one token: a readable BAD_USER_INPUT, and the prompt's tokens still shown.
  await page.goto(pageUrl([["prompt", PROMPT], ["target", BAD_TARGET]]));
  await settled(page);
  const error = page.getByTestId("error").first();
  await error.waitFor();
  f.error = {
    code: await error.getAttribute("data-code"),
    title: await error.locator("strong").innerText(),
    message: await error.locator(".error-message").innerText(),
    count: await page.getByTestId("error").count(),
    tokensShown: await page.getByTestId("attribution").getByTestId("token").count(),
  };
  await session.screenshot("prompt-error");

  const fatal = await page.evaluate(() => window.__viewerFatalErrors ?? []);
  check(fatal.length === 0, `unhandled errors on the page: ${JSON.stringify(fatal)}`);
});
