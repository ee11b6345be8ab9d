// Writes with a language model on nn serve's text page in headless Chromium,
// the way a person would: types a prompt, sets the length, temperature and
// seed, clicks Generate and watches the text. Run by tests/test_serve_text.c:
//
//   node tests/browser/write.mjs URL LENGTH [SCREENSHOT.png]
//
// Asks for LENGTH characters at temperature 0.5, seed 42, after "ROMEO:".
// Prints one JSON object: the prompt and the continuation the page shows at
// the end, every length (in characters) the continuation had on the page as
// it grew (recorded by a MutationObserver, so each time the page changed it),
// the status line, and what the page said for a refused request (length 5000)
// and for a prompt with a character the model does not know.
// Exits 1 on any page error (a script error, a failed request) or when the
// text never finishes.
import { createRequire } from "node:module";

// playwright-core lives in build-node/node_modules (scripts/node_deps.sh).
const require = createRequire(new URL("../../build-node/", import.meta.url));
const { chromium } = require("playwright-core");

const [url, length, screenshot] = process.argv.slice(2);
if (!url || !length) {
  console.error("usage: node tests/browser/write.mjs URL LENGTH [SCREENSHOT.png]");
  process.exit(2);
}

const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", headless: true });
const problems = [];
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 800 } });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  // The refused request below is meant to fail: Chromium logs its 400.
  page.on("console", (m) => {
    if (m.type() === "error" && !/status of 400/.test(m.text())) problems.push(`console: ${m.text()}`);
  });
  page.on("requestfailed", (r) => problems.push(`request failed: ${r.url()}: ${r.failure()?.errorText}`));
  await page.goto(url);
  // The page asks the server what the model is before anything else.
  await page.waitForFunction(() => document.getElementById("about").textContent.length > 0, null, { timeout: 20000 });

  await page.fill("#prompt", "ROMEO:");
  await page.fill("#length", length);
  await page.$eval("#temperature", (el) => { el.value = "0.5"; el.dispatchEvent(new Event("input")); });
  await page.uncheck("#new-seed");
  await page.fill("#seed", "42");
  await page.evaluate(() => {
    window.lengths = [];
    const shown = document.getElementById("continuation");
    new MutationObserver(() => window.lengths.push(Array.from(shown.textContent).length))
      .observe(shown, { childList: true, characterData: true, subtree: true });
  });
  await page.click("#generate");
  await page.waitForSelector("#result[data-state=done]", { timeout: 60000 });
  const result = await page.evaluate(() => ({
    prompt: document.getElementById("shown-prompt").textContent,
    text: document.getElementById("continuation").textContent,
    lengths: window.lengths,
    status: document.getElementById("status").textContent,
  }));
  if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });

  // A length the server refuses: its reason shows.
  await page.fill("#length", "5000");
  await page.click("#generate");
  await page.waitForSelector("#status.error", { timeout: 20000 });
  result.refused = await page.textContent("#status");

  // A character the model never saw: the page says which before asking.
  await page.fill("#length", "10");
  await page.fill("#prompt", "café");
  await page.click("#generate");
  await page.waitForFunction(() => /does not know/.test(document.getElementById("status").textContent), null,
                             { timeout: 20000 });
  result.unknown = await page.textContent("#status");

  if (problems.length) throw new Error(problems.join("; "));
  console.log(JSON.stringify(result));
} catch (err) {
  console.error(err.message + (problems.length ? `\n${problems.join("\n")}` : ""));
  process.exitCode = 1;
} finally {
  await browser.close();
}
