// What the browser scripts (run.mjs, triage.mjs) share: Chromium's flags,
// steps that pass or fail, what the pages said, and the 360 px check.
import { chromium } from 'playwright-core';

export const T = 20000;
// Flags that work on the CI machines (no sandbox as root, no background network).
export const FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync'];

export const pass = (step) => console.log(`PASS ${step}`);
export function check(cond, what) {
  if (!cond) throw new Error(`FAILED: ${what}`);
}

export const scriptErrors = [];
const trail = []; // everything the pages said, printed when a step fails
export function watch(page, label) {
  page.on('console', (m) => trail.push(`${label} console.${m.type()}: ${m.text()}`));
  page.on('requestfailed', (r) => trail.push(`${label} request failed: ${r.url()} ${r.failure()?.errorText}`));
  page.on('response', (r) => { if (r.status() >= 400) trail.push(`${label} ${r.status()} ${r.url()}`); });
  page.on('pageerror', (e) => scriptErrors.push(`${label}: ${e.message}`));
  page.on('console', (m) => {
    // Refused connections (offline) and 404s (optional endpoints) are expected resource errors.
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) scriptErrors.push(`${label}: ${m.text()}`);
  });
}

export const text = (page, sel) => page.locator(sel).first().innerText({ timeout: T });

export async function fits360(page, what) {
  const w = await page.evaluate(() => document.documentElement.scrollWidth);
  check(w <= 360, `${what} is ${w}px wide at 360`);
}

/// Runs `steps` with Debian's Chromium, then checks that no page logged a
/// script error; on a failure prints what the pages said and exits 1.
export function run(steps) {
  (async () => {
    const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: FLAGS });
    try {
      await steps(browser);
      check(scriptErrors.length === 0, `script errors or CSP violations:\n${scriptErrors.join('\n')}`);
      pass('no console errors');
    } finally {
      await browser.close();
    }
  })().catch((e) => {
    console.error(trail.slice(-40).join('\n'));
    console.error(e.stack || String(e));
    process.exit(1);
  });
}
