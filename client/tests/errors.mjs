// The viewer shows the server's typed errors as readable messages, never a blank page or an unhandled
// rejection; an unhandled rejection shows in a banner. Env: BASE_URL, CASES = JSON list of {name, node, prompt?} — each opens `/?node=<node>`, runs
// `prompt` in the live box when given, and reports the first error shown there (its code and text).
import { BASE_URL, check, required, withBrowser } from "./browser.mjs";

const CASES = JSON.parse(required("CASES"));

await withBrowser(async (page, session) => {
  // The cases provoke typed GraphQL errors; a server may answer them with a 4xx status (graphql-over-HTTP).
  session.allowFailure = (r) => new URL(r.url).pathname === "/graphql";
  session.findings.cases = [];
  for (const c of CASES) {
    await page.goto(`${BASE_URL}/?node=${encodeURIComponent(c.node)}`);
    let area = page.locator("main");
    if (c.prompt !== undefined) {
      await page.getByTestId("node-panel").waitFor();
      area = page.getByTestId("live-prompt");
      await area.getByTestId("prompt-input").fill(c.prompt);
      await area.getByTestId("prompt-run").click();
    }
    const error = area.getByTestId("error").first();
    await error.waitFor();
    await error.scrollIntoViewIfNeeded();
    const title = await error.locator("strong").innerText();
    const message = await error.locator(".error-message").innerText();
    session.findings.cases.push({ name: c.name, code: await error.getAttribute("data-code"), title, message });
    await session.screenshot(`viewer-error-${c.name}`);
    const fatal = await page.evaluate(() => window.__viewerFatalErrors ?? null);
    check(Array.isArray(fatal) && fatal.length === 0, `unhandled errors on the page: ${JSON.stringify(fatal)}`);
    check(message.trim() !== "", `case ${c.name}: the error has no message`);
  }

  // The global handler itself: an unhandled rejection shows in the banner and is counted, so the
  // "no unhandled errors" checks above and in viewer.mjs can fail.
  await page.goto(`${BASE_URL}/`);
  await page.getByTestId("node-input").waitFor();
  await page.evaluate(() => {
    void Promise.reject(new Error("provoked by errors.mjs"));
  });
  const banner = page.getByTestId("fatal-error");
  await banner.waitFor();
  const fatal = await page.evaluate(() => window.__viewerFatalErrors ?? []);
  check(fatal.length === 1 && fatal[0].message === "provoked by errors.mjs", `banner state: ${JSON.stringify(fatal)}`);
  session.findings.provokedBanner = await banner.innerText();
  await session.screenshot("viewer-error-unhandled-rejection");
  // Chromium also reported it as a page error; that one was expected.
  const provoked = session.pageErrors.findIndex((e) => e.includes("provoked by errors.mjs"));
  check(provoked >= 0, `Chromium did not report the provoked rejection: ${JSON.stringify(session.pageErrors)}`);
  session.pageErrors.splice(provoked, 1);
});
