// The node page against a real server: stats and the activation histogram, records centred on their max
// token (value on hover), a live prompt, the Explain button following its job, scoring with per-sequence
// simulated vs actual (asking for more sequences than the node has says so), the state in the URL (a
// reload resumes the job view), neighbouring nodes, and the favicon.
// Env: BASE_URL, NODE_ID, STEPS (default "node,live,explain,score,neighbours"), PROMPT, EXPLANATION,
// SCORE_METHOD, MAX_SEQUENCES, SHOT (screenshot prefix, default "viewer"), SCREENSHOT_DIR.
// Prints what the page showed for pytest to compare with the server's own answers.
import { BASE_URL, check, required, withBrowser } from "./browser.mjs";

const NODE_ID = required("NODE_ID");
const PROMPT = process.env.PROMPT ?? "The cat sat on the mat.";
const EXPLANATION = process.env.EXPLANATION ?? "the word 'the'";
const SCORE_METHOD = process.env.SCORE_METHOD ?? "token-lookup";
const MAX_SEQUENCES = process.env.MAX_SEQUENCES ?? "3";
const STEPS = new Set((process.env.STEPS ?? "node,live,explain,score,neighbours").split(","));
const SHOT = process.env.SHOT ?? "viewer";
const JOB_TIMEOUT_MS = Number(process.env.JOB_TIMEOUT_MS ?? 120000);

async function noFatalErrors(page) {
  const fatal = await page.evaluate(() => window.__viewerFatalErrors ?? null);
  check(Array.isArray(fatal), "the viewer's global error handler is not installed");
  check(fatal.length === 0, `unhandled errors on the page: ${JSON.stringify(fatal)}`);
}

const tokensOf = (locator) => locator.evaluateAll((els) => els.map((e) => e.dataset.token ?? ""));
const valuesOf = (locator) => locator.evaluateAll((els) => els.map((e) => Number(e.dataset.activation)));

async function openNode(page) {
  const panel = page.getByTestId("node-panel");
  await panel.or(page.getByTestId("error")).first().waitFor();
  if (!(await panel.isVisible())) {
    check(false, `node page shows an error: ${await page.getByTestId("error").first().innerText()}`);
  }
  return panel;
}

/** Waits for the followed job to end; returns what the job view showed. */
async function followJob(page) {
  const job = page.getByTestId("job");
  await job.waitFor();
  const done = job.getByTestId("job-score").or(job.getByTestId("error"));
  const deadline = Date.now() + JOB_TIMEOUT_MS;
  const progressSeen = [];
  const bar = job.getByTestId("job-progress");
  while (!(await done.first().isVisible())) {
    check(Date.now() < deadline, `job did not finish; progress seen ${JSON.stringify(progressSeen)}`);
    if (await bar.count()) {
      const now = await bar.getAttribute("aria-valuenow");
      if (progressSeen.at(-1) !== now) progressSeen.push(now);
    }
    await page.waitForTimeout(50);
  }
  const jobError = job.getByTestId("error");
  if (await jobError.count()) check(false, `the job failed: ${await jobError.first().innerText()}`);
  const sequences = job.getByTestId("sequence");
  const first = sequences.first();
  return {
    jobId: await job.getAttribute("data-job-id"),
    progressSeen,
    progressNow: (await bar.count()) ? Number(await bar.getAttribute("aria-valuenow")) : null,
    progressMax: (await bar.count()) ? Number(await bar.getAttribute("aria-valuemax")) : null,
    explanation: (await job.getByTestId("job-explanation").count())
      ? (await job.getByTestId("job-explanation").innerText()).replace(/^Explanation:\s*/, "").replace(/^“|”$/g, "")
      : null,
    scoreText: await job.getByTestId("job-score").innerText(),
    sequenceCount: await sequences.count(),
    firstSequence: (await sequences.count())
      ? {
          index: Number(await first.getAttribute("data-index")),
          actual: await valuesOf(first.getByTestId("sequence-actual").getByTestId("token")),
          predicted: await valuesOf(first.getByTestId("sequence-predicted").getByTestId("token")),
          score: await first.getByTestId("sequence-score").innerText(),
        }
      : null,
    notice: (await job.getByTestId("sequence-notice").count()) ? await job.getByTestId("sequence-notice").innerText() : null,
  };
}

await withBrowser(async (page, session) => {
  const f = session.findings;

  // 1. Node page: stats, the histogram from the stored quantiles, records centred on their max token.
  await page.goto(`${BASE_URL}/?node=${encodeURIComponent(NODE_ID)}`);
  await openNode(page);
  f.maxActivationShown = await page.getByTestId("max-activation").innerText();
  f.histogramBins = await page
    .getByTestId("histogram-bin")
    .evaluateAll((els) => els.map((e) => ({ lo: Number(e.dataset.lo), hi: Number(e.dataset.hi), mass: Number(e.dataset.mass) })));
  const top = page.getByTestId("top-activations");
  const records = top.getByTestId("record");
  f.topRecords = await records.count();
  check(f.topRecords > 0, "no top-activating records rendered");
  const firstRecord = records.first();
  const strip = firstRecord.getByTestId("heatmap");
  f.firstRecordWindow = [Number(await strip.getAttribute("data-start")), Number(await strip.getAttribute("data-end"))];
  f.firstRecordMaxIndex = Number(await firstRecord.getAttribute("data-max-index"));
  f.firstRecordMaxShown = await firstRecord.getByTestId("record-max").innerText();
  const tokens = firstRecord.getByTestId("token");
  f.firstRecordTokens = await tokensOf(tokens);
  f.firstRecordActivations = await valuesOf(tokens);
  f.firstRecordBackgrounds = await tokens.evaluateAll((els) => els.map((e) => getComputedStyle(e).backgroundColor));
  f.markedIndices = await firstRecord.locator(".token.marked").evaluateAll((els) => els.map((e) => Number(e.dataset.index)));
  f.randomRecords = await page.getByTestId("random-sample").getByTestId("record").count();
  // Hover the max token: its value in the tooltip.
  await firstRecord.locator(".token.marked").hover();
  f.tooltip = await page.getByTestId("token-tooltip").innerText();
  await session.screenshot(`${SHOT}-node`);
  // Whole records instead: the state goes into the URL.
  await page.getByTestId("show-full").check();
  await page.waitForURL(/view=full/);
  f.fullWindow = [
    Number(await page.getByTestId("top-activations").getByTestId("heatmap").first().getAttribute("data-start")),
    Number(await page.getByTestId("top-activations").getByTestId("heatmap").first().getAttribute("data-end")),
  ];
  await page.getByTestId("show-full").uncheck();

  if (STEPS.has("live")) {
    // 2. Live prompt: the model's activations on the user's text; the prompt goes into the URL.
    await page.getByTestId("prompt-input").fill(PROMPT);
    await page.getByTestId("prompt-run").click();
    const live = page.getByTestId("live-result").or(page.getByTestId("live-prompt").getByTestId("error"));
    await live.first().waitFor();
    const liveError = page.getByTestId("live-prompt").getByTestId("error");
    if (await liveError.count()) check(false, `live prompt failed: ${await liveError.first().innerText()}`);
    const liveTokens = page.getByTestId("live-result").getByTestId("token");
    f.liveTokens = await tokensOf(liveTokens);
    f.liveActivations = await valuesOf(liveTokens);
    f.urlAfterPrompt = page.url();
    await page.getByTestId("live-result").scrollIntoViewIfNeeded();
    await session.screenshot(`${SHOT}-live-prompt`);
  }

  if (STEPS.has("explain")) {
    // 3. Explain: the job's explanation streams in, then its scoring; the job id goes into the URL.
    await page.getByTestId("explain-score-method").selectOption(SCORE_METHOD.toUpperCase().replace(/-/g, "_"));
    await page.getByTestId("explain-button").click();
    await page.waitForURL(/job=/);
    f.explain = await followJob(page);
    f.explain.url = page.url();
    await page.getByTestId("job-panels").scrollIntoViewIfNeeded();
    await session.screenshot(`${SHOT}-explain`);
  }

  if (STEPS.has("score")) {
    // 4. Score an explanation on more sequences than the node has: the page says how many it scored.
    await page.getByTestId("score-explanation").fill(EXPLANATION);
    await page.getByTestId("score-method").fill(SCORE_METHOD);
    await page.getByTestId("score-max-sequences").fill(MAX_SEQUENCES);
    const before = page.url();
    await page.getByTestId("score-button").click();
    await page.waitForURL((url) => url.href !== before && url.searchParams.has("job"));
    f.score = await followJob(page);
    // The page refetched the stored explanations: the scored one is listed with its score and method.
    const listed = page.getByTestId("explanations").locator("li").filter({ hasText: EXPLANATION });
    await listed.first().waitFor();
    f.explanationsAfterScoring = await page.getByTestId("explanations").locator("li").allInnerTexts();
    await page.getByTestId("job").scrollIntoViewIfNeeded();
    await session.screenshot(`${SHOT}-score`);
    // Reload: the URL alone brings back the job (replayed from its event log) and the prompt.
    await page.reload();
    await openNode(page);
    f.afterReload = await followJob(page);
    f.promptAfterReload = await page.getByTestId("prompt-input").inputValue();
  }

  if (STEPS.has("neighbours")) {
    // 5. Neighbours: the next index, then back with the browser's back button.
    const start = page.url();
    await page.getByTestId("next-index").click();
    await page.waitForURL((url) => url.href !== start);
    await openNode(page);
    f.nextNodeId = await page.getByTestId("node-panel").getAttribute("data-node-id");
    f.neighbourLinks = await page.getByTestId("neighbours").locator("a").evaluateAll((els) => els.map((e) => e.getAttribute("data-testid")));
    await page.goBack();
    await openNode(page);
    f.backNodeId = await page.getByTestId("node-panel").getAttribute("data-node-id");
  }

  await noFatalErrors(page);
});
