// Draws digits on nn serve's page in headless Chromium, the way a person
// would: mouse strokes on the canvas, one answer read off the page after
// each drawing, Clear between them. Run by tests/test_serve.c:
//
//   node tests/browser/draw.mjs URL PNG_PREFIX [SCREENSHOT.png]
//
// A 1, a 0 and a 7 with the mouse, then the 1 again with touch events on a
// phone-sized page. Prints a JSON array, one object per drawing: the digit
// the page shows, the sum of the ten percentages on its bars, how much ink
// the 28x28 view shows; writes what the canvas held as PNG_PREFIX0.png,
// PNG_PREFIX1.png, ...; SCREENSHOT.png shows the page after the last mouse
// drawing, SCREENSHOT-phone.png the phone after the touch one.
// Exits 1 on any page error (a script error, a blocked request, a failed
// fetch) or when no answer appears.
import { createRequire } from "node:module";
import { writeFileSync } from "node:fs";

// playwright-core lives in build-node/node_modules (scripts/node_deps.sh).
const require = createRequire(new URL("../../build-node/", import.meta.url));
const { chromium } = require("playwright-core");

const [url, prefix, screenshot] = process.argv.slice(2);
if (!url || !prefix) {
  console.error("usage: node tests/browser/draw.mjs URL PNG_PREFIX [SCREENSHOT.png]");
  process.exit(2);
}

// Strokes as lists of points in the canvas's unit square.
const digits = [
  { name: "1", strokes: [[[0.52, 0.15], [0.5, 0.5], [0.48, 0.85]]] },
  {
    name: "0",
    strokes: [Array.from({ length: 41 }, (_, i) => {
      const a = (i / 40) * 2 * Math.PI;
      return [0.5 + 0.24 * Math.sin(a), 0.5 - 0.34 * Math.cos(a)];
    })],
  },
  { name: "7", strokes: [[[0.25, 0.2], [0.75, 0.2]], [[0.75, 0.2], [0.6, 0.5], [0.45, 0.85]]] },
];

const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", headless: true });
const problems = [];
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 760 } });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => { if (m.type() === "error") problems.push(`console: ${m.text()}`); });
  page.on("requestfailed", (r) => problems.push(`request failed: ${r.url()}`));
  await page.goto(url);
  const pad = page.locator("#pad");
  const box = await pad.boundingBox();
  const at = ([x, y]) => [box.x + x * box.width, box.y + y * box.height];

  const results = [];
  for (const [i, digit] of digits.entries()) {
    await page.click("#clear");
    for (const stroke of digit.strokes) {
      await page.mouse.move(...at(stroke[0]));
      await page.mouse.down();
      for (const p of stroke.slice(1)) await page.mouse.move(...at(p), { steps: 8 });
      await page.mouse.up();
    }
    results.push(await answer(page, `${prefix}${i}.png`, digit.name));
  }
  if (screenshot) {
    await page.waitForTimeout(400); // let the bars finish growing
    await page.screenshot({ path: screenshot, fullPage: true });
  }

  // A finger on a phone-sized page: the 1 again, with touch events.
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, hasTouch: true, isMobile: true });
  const touchPage = await phone.newPage();
  touchPage.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  touchPage.on("console", (m) => { if (m.type() === "error") problems.push(`console: ${m.text()}`); });
  await touchPage.goto(url);
  const cdp = await phone.newCDPSession(touchPage);
  const tbox = await touchPage.locator("#pad").boundingBox();
  const touch = (type, [x, y]) => cdp.send("Input.dispatchTouchEvent", {
    type, touchPoints: type === "touchEnd" ? [] : [{ x: tbox.x + x * tbox.width, y: tbox.y + y * tbox.height }],
  });
  const line = digits[0].strokes[0];
  await touch("touchStart", line[0]);
  for (let k = 1; k <= 16; k++) {
    const t = k / 16, a = line[0], b = line[line.length - 1];
    await touch("touchMove", [a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])]);
  }
  await touch("touchEnd", line[line.length - 1]);
  results.push(await answer(touchPage, `${prefix}${digits.length}.png`, "1 (touch)"));
  if (screenshot) {
    await touchPage.waitForTimeout(400);
    await touchPage.screenshot({ path: screenshot.replace(/\.png$/, "") + "-phone.png", fullPage: true });
  }
  console.log(JSON.stringify(results));
} finally {
  await browser.close();
}
if (problems.length) {
  console.error(problems.join("\n"));
  process.exit(1);
}

// Waits for the answer to the last stroke (nothing pending, a digit shown),
// reads it off the page and saves the canvas as png.
async function answer(page, png, drawn) {
  await page.waitForFunction(() => {
    const r = document.querySelector("#result");
    return r.dataset.pending === "0" && r.dataset.seq !== "0" && document.querySelector("#digit").textContent !== "";
  }, null, { timeout: 20000 });
  const shown = await page.evaluate(() => {
    const pct = [...document.querySelectorAll("#bars .pct")].map((e) => parseFloat(e.textContent));
    const seen = document.querySelector("#seen");
    const px = seen.getContext("2d").getImageData(0, 0, seen.width, seen.height).data;
    let ink = 0;
    for (let k = 0; k < px.length; k += 4) ink += px[k];
    return {
      digit: document.querySelector("#digit").textContent,
      percent_sum: pct.reduce((a, b) => a + b, 0),
      seen_ink: ink / (255 * seen.width * seen.height),
      png: document.querySelector("#pad").toDataURL("image/png"),
    };
  });
  writeFileSync(png, Buffer.from(shown.png.split(",")[1], "base64"));
  delete shown.png;
  return { drawn, ...shown };
}
