// Real-browser check of the perturbation explorer in the built book (driven by tests/test_explorer_browser.py).
//
// Opens one page in headless chromium (the system's, never a downloaded one), lets only requests to 127.0.0.1
// (and data:/blob: URLs) through, aborts and records every other one, waits for the widget to render, presses
// ArrowRight on the epsilon slider, then clicks the second image button. It saves screenshots and writes a JSON
// report of what it saw; the Python test makes the assertions.
//
// usage: node slider_check.mjs --url URL --chromium PATH --user-data-dir DIR --out DIR
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";

import { chromium } from "playwright-core";

const { values: opts } = parseArgs({
  options: {
    url: { type: "string" },
    chromium: { type: "string", default: "/usr/bin/chromium" },
    "user-data-dir": { type: "string" },
    out: { type: "string" },
    timeout: { type: "string", default: "30000" },
  },
});
for (const name of ["url", "user-data-dir", "out"]) {
  if (!opts[name]) throw new Error(`missing --${name}`);
}
const timeout = Number(opts.timeout);
mkdirSync(opts.out, { recursive: true });

const LOCAL_HOST = "127.0.0.1";
const WIDGET_IMAGE = "img.widget-image";

function isLocal(url) {
  const parsed = new URL(url);
  if (parsed.protocol === "data:" || parsed.protocol === "blob:") return true;
  return (parsed.protocol === "http:" || parsed.protocol === "https:") && parsed.hostname === LOCAL_HOST;
}

const report = {
  requests: [],
  blocked: [],
  consoleErrors: [],
  pageErrors: [],
  failedRequests: [],
  steps: {},
  screenshots: {},
  error: null,
};

// What the reader sees: visible widget images (one per model) and the texts around them.
async function snapshot(page) {
  return page.evaluate((selector) => {
    const visible = (el) => el.offsetParent !== null && el.getBoundingClientRect().width > 0;
    const images = [...document.querySelectorAll(selector)].filter(visible);
    const captions = [...document.querySelectorAll(".widget-html-content")].filter(visible);
    const readout = document.querySelector(".widget-slider .widget-readout");
    const pressed = document.querySelector(".widget-toggle-buttons button.mod-active");
    return {
      srcs: images.map((img) => img.getAttribute("src")),
      loaded: images.map((img) => img.complete && img.naturalWidth > 0),
      sizes: images.map((img) => [img.naturalWidth, img.naturalHeight]),
      captions: captions.map((el) => el.textContent.trim()),
      readout: readout ? readout.textContent.trim() : null,
      image_button: pressed ? pressed.textContent.trim() : null,
    };
  }, WIDGET_IMAGE);
}

async function waitForChange(page, before) {
  try {
    await page.waitForFunction(
      ([selector, old]) => {
        const imgs = [...document.querySelectorAll(selector)].filter((el) => el.offsetParent !== null);
        return imgs.length > 0 && imgs.every((img) => img.complete && img.naturalWidth > 0) &&
          JSON.stringify(imgs.map((img) => img.getAttribute("src"))) !== JSON.stringify(old);
      },
      [WIDGET_IMAGE, before.srcs],
      { timeout: 10000 },
    );
  } catch {
    // no change: the report shows identical sources and the test fails on that
  }
  return snapshot(page);
}

async function shoot(page, name) {
  const path = join(opts.out, `${name}.png`);
  await page.locator(".widget-vbox").first().screenshot({ path });
  report.screenshots[name] = path;
}

const context = await chromium.launchPersistentContext(opts["user-data-dir"], {
  executablePath: opts.chromium,
  headless: true,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
  ],
  viewport: { width: 1100, height: 900 },
  offline: false,
});
try {
  context.on("request", (request) => report.requests.push(request.url()));
  context.on("requestfailed", (request) => {
    if (isLocal(request.url())) report.failedRequests.push(`${request.url()}: ${request.failure()?.errorText}`);
  });
  await context.route("**/*", (route) => {
    const url = route.request().url();
    if (isLocal(url)) return route.continue();
    report.blocked.push(url);
    return route.abort("blockedbyclient");
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.on("console", (message) => {
    if (message.type() === "error") report.consoleErrors.push(message.text());
  });
  page.on("pageerror", (error) => report.pageErrors.push(String(error)));

  await page.goto(opts.url, { waitUntil: "load", timeout });
  await page.locator(`${WIDGET_IMAGE} >> visible=true`).first().waitFor({ state: "visible", timeout });
  await page.waitForFunction(
    (selector) => [...document.querySelectorAll(selector)].some((img) => img.complete && img.naturalWidth > 0),
    WIDGET_IMAGE,
    { timeout },
  );
  report.steps.initial = await snapshot(page);
  await shoot(page, "before");

  const handle = page.locator(".widget-slider .noUi-handle").first();
  await handle.focus();
  await page.keyboard.press("ArrowRight");
  report.steps.slider = await waitForChange(page, report.steps.initial);
  await shoot(page, "after");

  const buttons = page.locator(".widget-toggle-buttons button");
  if ((await buttons.count()) > 1) {
    await buttons.nth(1).click();
    report.steps.picker = await waitForChange(page, report.steps.slider);
    await shoot(page, "picker");
  }
} catch (error) {
  report.error = String(error && error.stack ? error.stack : error);
} finally {
  await context.close();
  writeFileSync(join(opts.out, "report.json"), JSON.stringify(report, null, 1));
}
