// The viewer opened while the server is still starting: it says so (with the server's phase) instead of
// failing, then shows the home page by itself once /health/ready is 200. Env: BASE_URL, SCREENSHOT_DIR.
import { BASE_URL, check, withBrowser } from "./browser.mjs";

await withBrowser(async (page, session) => {
  // /health/ready answers 503 until the server is ready: expected here, and Chromium logs each one.
  session.allowFailure = (r) => new URL(r.url).pathname === "/health/ready" && r.status === 503;
  session.allowConsole = (text) => text.includes("status of 503");
  const f = session.findings;
  await page.goto(`${BASE_URL}/`);
  const starting = page.getByTestId("starting");
  await starting.waitFor();
  await page.waitForFunction(() => document.querySelector("[data-testid=starting]")?.textContent?.includes("("));
  f.startingText = await starting.innerText();
  await session.screenshot("viewer-starting");
  await page.getByTestId("home").waitFor({ timeout: 60000 });
  f.homeShown = true;
  f.readyPolls = session.responses.filter((r) => new URL(r.url).pathname === "/health/ready").map((r) => r.status);
  const fatal = await page.evaluate(() => window.__viewerFatalErrors ?? []);
  check(fatal.length === 0, `unhandled errors on the page: ${JSON.stringify(fatal)}`);
});
