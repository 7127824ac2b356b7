// What the browser scripts (run.mjs, triage.mjs) share: Chromium's flags,
// steps that pass or fail, what the pages said, the 360 px check, axe-core
// and the touch-target check.
import { chromium } from 'playwright-core';
import { readFileSync } from 'node:fs';

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

// axe-core, evaluated into the page over the DevTools protocol (the page's
// CSP forbids injected script tags, rightly).
const AXE = readFileSync(new URL('./node_modules/axe-core/axe.min.js', import.meta.url), 'utf8');
const AXE_TAGS = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice'];

/// (DASH_LIST_ONLY=1 lists what axe-core and the touch-target check find on
/// every page instead of stopping at the first.)
/// Fails on any serious or critical axe-core violation of the page as shown.
export async function axe(page, what) {
  if (!(await page.evaluate(() => typeof window.axe === 'object'))) await page.evaluate(AXE);
  const result = await page.evaluate((tags) => window.axe.run(document, { runOnly: { type: 'tag', values: tags } }), AXE_TAGS);
  const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  const said = bad.map((v) => `${v.id} (${v.impact}): ${v.help}, at ${v.nodes.slice(0, 4).map((n) => n.target.join(' ')).join(' | ')}`);
  if (process.env.DASH_LIST_ONLY && bad.length) { console.log(`${what}: axe-core found\n  ${said.join('\n  ')}`); return; }
  check(bad.length === 0, `${what}: axe-core found\n  ${said.join('\n  ')}`);
  return result.violations.length;
}

/// Fails when a control a finger must hit is under 44 by 44 CSS pixels.
/// Exempt, as in WCAG 2.5.5: links inside a sentence. A checkbox counts with
/// the label that toggles it.
export async function touchTargets(page, what) {
  const small = await page.evaluate(() => {
    const out = [];
    const controls = 'a[href], button, input:not([type=hidden]), select, textarea, summary, [tabindex]:not([tabindex="-1"])';
    for (const el of document.querySelectorAll(controls)) {
      const own = el.getBoundingClientRect();
      if (!own.width || !own.height || el.closest('.skip')) continue; // not shown
      const block = el.parentElement?.closest('p, li, dd, td, div');
      const inSentence = el.tagName === 'A' && getComputedStyle(el).display === 'inline' && block
        && block.textContent.trim() !== el.textContent.trim();
      if (inSentence) continue;
      const label = (el.type === 'checkbox' || el.type === 'radio') && (el.closest('label') || el.labels?.[0]);
      const r = label ? label.getBoundingClientRect() : own;
      if (r.width < 43.5 || r.height < 43.5) {
        const name = `${el.tagName.toLowerCase()}${el.id ? `#${el.id}` : ''}`;
        out.push(`${name} "${(el.textContent || el.getAttribute('name') || '').trim().slice(0, 24)}" ${Math.round(r.width)}x${Math.round(r.height)}`);
      }
    }
    return out;
  });
  if (process.env.DASH_LIST_ONLY && small.length) { console.log(`${what}: touch targets under 44px:\n  ${small.join('\n  ')}`); return; }
  check(small.length === 0, `${what}: touch targets under 44px:\n  ${small.join('\n  ')}`);
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
