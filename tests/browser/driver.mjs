// A small browser driver for Python tests: Debian's chromium through playwright-core, driven by
// JSON lines. Each line on stdin is {"id", "cmd", ...}; each answer on stdout is
// {"id", "ok": true, "result"} or {"id", "ok": false, "error"}. Commands:
//   launch {executablePath, userDataDir, args, viewport}   goto {url}
//   evaluate {expression}           waitFor {expression, timeoutMs}   (a truthy JS expression)
//   screenshot {path, fullPage}     problems  (console errors, page errors, failed requests)
//   close
// Used by tests/integration/test_dashboard_browser.py; install with scripts/browser-setup.sh.
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

let context = null;
let page = null;
const problems = [];

function send(message) {
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

function watch(target) {
  target.on("console", (message) => {
    if (message.type() === "error") problems.push(`console error: ${message.text()}`);
  });
  target.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  target.on("requestfailed", (request) => {
    const failure = request.failure();
    // an EventSource or fetch cut short by navigation or close is not an error of the page
    if (failure && failure.errorText !== "net::ERR_ABORTED") {
      problems.push(`request failed: ${request.url()} ${failure.errorText}`);
    }
  });
  target.on("response", (response) => {
    if (response.status() >= 400) problems.push(`HTTP ${response.status()}: ${response.url()}`);
  });
}

const commands = {
  async launch({ executablePath, userDataDir, args = [], viewport }) {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath,
      headless: true,
      chromiumSandbox: false,
      args,
      viewport: viewport || { width: 1400, height: 1000 },
      timeout: 20000,
    });
    page = context.pages()[0] || (await context.newPage());
    watch(page);
    return { version: context.browser() ? context.browser().version() : null };
  },
  async goto({ url }) {
    const response = await page.goto(url, { waitUntil: "load", timeout: 15000 });
    return { status: response ? response.status() : null };
  },
  async evaluate({ expression }) {
    return page.evaluate(expression);
  },
  async waitFor({ expression, timeoutMs = 10000 }) {
    const handle = await page.waitForFunction(expression, null, { timeout: timeoutMs, polling: 100 });
    return handle.jsonValue();
  },
  async screenshot({ path, fullPage = true }) {
    await page.screenshot({ path, fullPage });
    return { path };
  },
  async problems() {
    return problems.slice();
  },
  async close() {
    if (context) await context.close();
    context = null;
    return null;
  },
};

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  let request;
  try {
    request = JSON.parse(line);
    const handler = commands[request.cmd];
    if (!handler) throw new Error(`unknown command ${request.cmd}`);
    send({ id: request.id, ok: true, result: (await handler(request)) ?? null });
  } catch (error) {
    send({ id: request && request.id, ok: false, error: String(error && error.stack || error) });
  }
  if (request && request.cmd === "close") break;
}
if (context) await context.close();
process.exit(0);
