// Shared set-up for the browser tests: Debian's Chromium driven by playwright-core, a fresh empty profile,
// every non-loopback request blocked and recorded, and every page error collected. The scripts print one
// JSON line (their findings) for the pytest side and exit non-zero on the first failed check.
import { mkdtemp, mkdir, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";

import { chromium } from "playwright-core";

export const BASE_URL = required("BASE_URL").replace(/\/$/, "");
export const SCREENSHOT_DIR = process.env.SCREENSHOT_DIR ?? path.resolve("artifacts", "screenshots");
const EXECUTABLE = process.env.CHROMIUM ?? "/usr/bin/chromium";
const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];

export function required(name) {
  const value = process.env[name];
  if (value === undefined || value === "") throw new Error(`set ${name}`);
  return value;
}

function isLoopback(url) {
  if (url.startsWith("data:") || url.startsWith("blob:") || url.startsWith("about:")) return true;
  const { hostname } = new URL(url);
  return hostname === "127.0.0.1" || hostname === "localhost" || hostname === "[::1]" || hostname === "::1";
}

export class CheckFailed extends Error {}

export function check(condition, message) {
  if (!condition) throw new CheckFailed(message);
}

/**
 * Runs `body(page, session)` in a fresh browser; `session` has `blocked` (non-loopback URLs that were
 * attempted), `pageErrors` (uncaught exceptions and unhandled rejections), `consoleErrors`, `requests`
 * (loopback URLs), `responses` ({url, status}; any status >= 400 fails the run) and `screenshot(name)`. Prints `{ok, ...findings}` as JSON and sets the exit code.
 */
export async function withBrowser(body) {
  const profile = await mkdtemp(path.join(os.tmpdir(), "ne-chromium-"));
  const session = { blocked: [], pageErrors: [], consoleErrors: [], requests: [], responses: [], findings: {} };
  let context;
  let failure = null;
  try {
    await mkdir(SCREENSHOT_DIR, { recursive: true });
    context = await chromium.launchPersistentContext(profile, {
      executablePath: EXECUTABLE,
      headless: true,
      args: FLAGS,
      viewport: { width: 1280, height: 900 },
      serviceWorkers: "block",
    });
    await context.route("**/*", (route) => {
      const url = route.request().url();
      if (isLoopback(url)) {
        session.requests.push(url);
        return route.continue();
      }
      session.blocked.push(url);
      return route.abort("blockedbyclient");
    });
    const page = context.pages()[0] ?? (await context.newPage());
    page.setDefaultTimeout(Number(process.env.STEP_TIMEOUT_MS ?? 60000));
    page.on("pageerror", (error) => session.pageErrors.push(String(error)));
    page.on("response", (response) => session.responses.push({ url: response.url(), status: response.status() }));
    page.on("console", (msg) => {
      if (msg.type() === "error") session.consoleErrors.push(msg.text());
    });
    session.screenshot = async (name) => {
      const file = path.join(SCREENSHOT_DIR, `${name}.png`);
      await page.screenshot({ path: file, fullPage: true });
      (session.findings.screenshots ??= []).push(file);
    };
    await body(page, session);
    check(session.pageErrors.length === 0, `page errors: ${JSON.stringify(session.pageErrors)}`);
    check(session.blocked.length === 0, `requests left the machine: ${JSON.stringify(session.blocked)}`);
    // A 404 (a missing favicon or asset) or a 5xx, even one the page survived, is a defect.
    const bad = session.responses.filter((r) => r.status >= 400 && !session.allowFailure?.(r));
    check(bad.length === 0, `failed responses: ${JSON.stringify(bad)}`);
    // A failed load (a 400 from a stale operation, a missing asset) shows up only here.
    const consoleErrors = session.consoleErrors.filter((text) => !session.allowConsole?.(text));
    check(consoleErrors.length === 0, `console errors: ${JSON.stringify(consoleErrors)}`);
  } catch (error) {
    failure = error instanceof CheckFailed ? error.message : String(error?.stack ?? error);
  } finally {
    await context?.close().catch(() => {});
    await rm(profile, { recursive: true, force: true });
  }
  const report = {
    ok: failure === null,
    failure,
    blocked: session.blocked,
    pageErrors: session.pageErrors,
    consoleErrors: session.consoleErrors,
    ...session.findings,
  };
  console.log(JSON.stringify(report));
  process.exitCode = failure === null ? 0 : 1;
}
