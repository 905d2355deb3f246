// The viewer page against a real server: a node's heatmap (value on hover), a live prompt, and a scoring
// job whose progress bar reaches completion with the score (errors: errors.mjs).
// Env: BASE_URL, NODE_ID, STEPS (default "node,live,score"), PROMPT, EXPLANATION, SCORE_METHOD,
// MAX_SEQUENCES, SHOT (screenshot name prefix, default "viewer"), SCREENSHOT_DIR.
// Prints what the page showed (token counts, tooltip, score, error codes) for pytest to compare with
// the server's own answers.
import { BASE_URL, check, required, withBrowser } from "./browser.mjs";

const NODE_ID = required("NODE_ID");
const PROMPT = process.env.PROMPT ?? "The cat sat on the mat.";
const EXPLANATION = process.env.EXPLANATION ?? "the word 'the'";
const SCORE_METHOD = process.env.SCORE_METHOD ?? "baseline";
const MAX_SEQUENCES = process.env.MAX_SEQUENCES ?? "3";
const STEPS = new Set((process.env.STEPS ?? "node,live,score").split(","));
const SHOT = process.env.SHOT ?? "viewer";

async function noFatalErrors(page) {
  const fatal = await page.evaluate(() => window.__viewerFatalErrors ?? null);
  check(Array.isArray(fatal), "the viewer's global error handler is not installed");
  check(fatal.length === 0, `unhandled errors on the page: ${JSON.stringify(fatal)}`);
}

await withBrowser(async (page, session) => {
  const f = session.findings;

  // 1. Node page: stats + top-activating records as a heatmap; hovering a token shows its value.
  await page.goto(`${BASE_URL}/?node=${encodeURIComponent(NODE_ID)}`);
  const panel = page.getByTestId("node-panel");
  await panel.or(page.getByTestId("error")).first().waitFor();
  if (!(await panel.isVisible())) {
    check(false, `node page shows an error: ${await page.getByTestId("error").first().innerText()}`);
  }
  const top = page.getByTestId("top-activations");
  const rows = top.getByTestId("heatmap");
  f.topRecords = await rows.count();
  check(f.topRecords > 0, "no top-activating records rendered");
  const firstRow = rows.first().getByTestId("token");
  f.firstRecordTokens = await firstRow.evaluateAll((els) => els.map((e) => e.dataset.token ?? ""));
  f.firstRecordActivations = await firstRow.evaluateAll((els) => els.map((e) => Number(e.dataset.activation)));
  f.firstRecordBackgrounds = await firstRow.evaluateAll((els) => els.map((e) => getComputedStyle(e).backgroundColor));
  f.maxActivationShown = await page.getByTestId("max-activation").innerText();
  // Hover the most active token of the first record.
  const hottest = f.firstRecordActivations.indexOf(Math.max(...f.firstRecordActivations));
  await firstRow.nth(hottest).hover();
  f.tooltip = await page.getByTestId("token-tooltip").innerText();
  f.hoveredIndex = hottest;
  await session.screenshot(`${SHOT}-node`);

  if (STEPS.has("live")) await livePrompt(page, session);
  if (STEPS.has("score")) await score(page, session);
  await noFatalErrors(page);
});

/** 2. Live prompt: the same heatmap for the user's text, computed by the model. */
async function livePrompt(page, session) {
  const f = session.findings;
  await page.getByTestId("prompt-input").fill(PROMPT);
  await page.getByTestId("prompt-run").click();
  const live = page.getByTestId("live-result").or(page.getByTestId("live-prompt").getByTestId("error"));
  await live.first().waitFor();
  const liveError = page.getByTestId("live-prompt").getByTestId("error");
  if (await liveError.count()) check(false, `live prompt failed: ${await liveError.first().innerText()}`);
  const liveTokens = page.getByTestId("live-result").getByTestId("token");
  f.liveTokens = await liveTokens.evaluateAll((els) => els.map((e) => e.dataset.token ?? ""));
  f.liveActivations = await liveTokens.evaluateAll((els) => els.map((e) => Number(e.dataset.activation)));
  check(f.liveTokens.length > 0, "live prompt rendered no tokens");
  await page.getByTestId("live-result").scrollIntoViewIfNeeded();
  await session.screenshot(`${SHOT}-live-prompt`);
}

/** 3. Score an explanation: the progress bar follows the jobEvents subscription to the final score. */
async function score(page, session) {
  const f = session.findings;
  await page.getByTestId("score-explanation").fill(EXPLANATION);
  await page.getByTestId("score-method").fill(SCORE_METHOD);
  await page.getByTestId("score-max-sequences").fill(MAX_SEQUENCES);
  await page.getByTestId("score-button").click();
  const bar = page.getByTestId("job-progress");
  await bar.waitFor();
  // Sample the bar while the job runs, to show it moved rather than jumping straight to the end.
  f.progressSeen = [];
  const scorePanel = page.getByTestId("score-panel");
  const done = scorePanel.getByTestId("job-score").or(scorePanel.getByTestId("error"));
  const deadline = Date.now() + Number(process.env.JOB_TIMEOUT_MS ?? 120000);
  while (!(await done.first().isVisible())) {
    check(Date.now() < deadline, `job did not finish; progress seen ${JSON.stringify(f.progressSeen)}`);
    const now = await bar.getAttribute("aria-valuenow");
    if (f.progressSeen.at(-1) !== now) f.progressSeen.push(now);
    await page.waitForTimeout(50);
  }
  const jobError = scorePanel.getByTestId("error");
  if (await jobError.count()) check(false, `scoring failed: ${await jobError.first().innerText()}`);
  f.jobId = await page.getByTestId("job").getAttribute("data-job-id");
  f.progressNow = Number(await bar.getAttribute("aria-valuenow"));
  f.progressMax = Number(await bar.getAttribute("aria-valuemax"));
  f.progressWidth = await bar.locator(".progress-fill").evaluate((e) => e.style.width);
  f.scoreText = await scorePanel.getByTestId("job-score").innerText();
  check(f.progressMax > 0 && f.progressNow === f.progressMax, `progress ended at ${f.progressNow}/${f.progressMax}`);
  // The node page refetches its explanations when the job completes: the scored one is listed.
  const listed = page.getByTestId("explanations").locator("li").filter({ hasText: EXPLANATION });
  await listed.first().waitFor();
  f.explanationsAfterScoring = await page.getByTestId("explanations").locator("li").allInnerTexts();
  await scorePanel.scrollIntoViewIfNeeded();
  await session.screenshot(`${SHOT}-score`);
}
