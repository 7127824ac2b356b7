// The dashboard in a real headless Chromium (Debian's), driven by
// playwright-core. Run by tests/e2e/dashboard.rs, which starts the ledger,
// passes DASH_URL, DASH_TOKEN, DASH_VKEY, DASH_SIZE, DASH_SCREENSHOTS, and
// stops the ledger when this script prints STOP_SERVER (then answers on
// stdin). Prints "PASS <step>" per step; exits non-zero on the first failure.
import { generateKeyPairSync, createHash } from 'node:crypto';
import { createInterface } from 'node:readline';
import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { chromium } from 'playwright-core';
import { T, FLAGS, pass, check, watch, text, fits360, axe, touchTargets, run } from './common.mjs';

const URL_ = process.env.DASH_URL;
const TOKEN = process.env.DASH_TOKEN;
const VKEY = process.env.DASH_VKEY;
const SIZE = process.env.DASH_SIZE;
const SHOTS = process.env.DASH_SCREENSHOTS;
// An incident the Rust side opened, marked a breach in Nigeria.
const INCIDENT = process.env.DASH_INCIDENT;
const INCIDENT_TITLE = process.env.DASH_INCIDENT_TITLE;
const NG_DEADLINE = process.env.DASH_NG_DEADLINE;
const NG_REFERENCE = process.env.DASH_NG_REFERENCE;
const shot = (page, name) => page.screenshot({ path: join(SHOTS, name), fullPage: true });

async function signIn(page, label) {
  await page.goto(`${URL_}/`);
  await page.locator('#token').waitFor({ timeout: T });
  // The key field is prefilled with the server's claim; the user pins the one they trust.
  await page.waitForFunction((v) => document.querySelector('#vkey').value === v, VKEY, { timeout: T });
  check(!(await page.locator('#remember').isChecked()), 'remember defaults to off');
  await page.fill('#token', 'wrong-token');
  await page.click('form button[type=submit]');
  await page.locator('.error').waitFor({ timeout: T });
  await page.fill('#token', TOKEN);
  await page.fill('#vkey', VKEY);
  await page.click('form button[type=submit]');
  await page.locator('#tree-size').waitFor({ timeout: T });
  check(await page.evaluate(() => localStorage.getItem('aiaudit.token')) === null, 'token not on disk by default');
  pass(`${label} sign-in`);
}

async function overview(page, label) {
  check((await text(page, '#tree-size')) === SIZE, `tree size ${SIZE}`);
  check((await text(page, '#cp-signature')).includes('signed by the pinned key'), 'checkpoint signature checked');
  check((await text(page, '#cp-witnesses')).includes('not checked'), 'witnesses: no policy pinned, nothing claimed');
  check((await text(page, '#incidents-now')).startsWith('1 open incident;'), 'open incidents counted on the overview');
  // Two samples make a rate: the chart appears after the second (5 s).
  await page.locator('.charts canvas').first().waitFor({ timeout: T });
  pass(`${label} overview`);
}

/// A pinned witness policy whose witness never cosigned this log: the
/// overview says the quorum is not met and names the witness missing.
async function witnessPolicy(page) {
  const doc = JSON.parse(readFileSync(new URL('../../crates/tlog/testdata/witness/cosignatures-1000.json', import.meta.url)));
  const w = doc.witnesses[0].vkey;
  await page.evaluate(([log, key]) => localStorage.setItem('aiaudit.witness-policy', `log ${log}\nwitness w1 ${key}\nquorum w1\n`), [VKEY, w]);
  await page.goto(`${URL_}/#/`);
  await page.reload();
  await page.waitForFunction(() => (document.querySelector('#cp-witnesses')?.innerText || '').includes('quorum NOT met'), null, { timeout: T });
  check((await text(page, '#cp-witnesses')).includes('missing w1'), 'the missing witness is named');
  await page.evaluate(() => localStorage.removeItem('aiaudit.witness-policy'));
  pass('witness policy: a quorum the checkpoint lacks is shown as not met');
}

/// Waits until the service worker controls the page, then reloads so the
/// data views go through it (and are saved for offline use).
async function underServiceWorker(page) {
  await page.waitForFunction(() => navigator.serviceWorker.controller !== null, null, { timeout: T });
}

async function openEvent(page, label, viaKeyboard) {
  const first = page.locator('#results a').first();
  await first.waitFor({ timeout: T });
  if (viaKeyboard) {
    await first.focus();
    await page.keyboard.press('Enter');
  } else {
    await first.click();
  }
  await page.locator('#proof-verdict').waitFor({ timeout: T });
  const verdict = await text(page, '#proof-verdict');
  check(verdict.includes('Verified'), `event verified, got: ${verdict}`);
  pass(`${label} event verified`);
}

const count = (page) => page.locator('#results li').count();
const incidentsStatus = (page) => page.locator('main p[role=status]').first().innerText({ timeout: T });

/// The incidents list (filters, severity, breach mark; the title, which
/// holds markup, shown as text), one incident with its breach clock, and a
/// regulator pack fetched with the token.
async function incidents(page) {
  await page.click('nav a[href="#/incidents"]');
  const row = page.locator(`#incidents a[href="#/incidents/${INCIDENT}"]`);
  await row.waitFor({ timeout: T });
  check((await incidentsStatus(page)) === '1 of 1 incident, newest first', `listed: ${await incidentsStatus(page)}`);
  check((await row.locator('.severity').innerText()) === 'high', 'severity shown');
  check((await row.locator('.title').innerText()) === INCIDENT_TITLE, 'title shown as text');
  check(await page.locator('#injected').count() === 0, 'markup in the title never becomes an element');
  check((await row.locator('.breach').innerText()) === `breach: ng:authority by ${NG_DEADLINE}`, `breach mark: ${await row.innerText()}`);
  check((await row.locator('.status').innerText()) === 'open', 'status shown');
  // Filters go into the URL and to the API.
  await page.selectOption('#i-severity', 'low');
  await page.click('form[role=search] button[type=submit]');
  await page.waitForFunction(() => location.hash === '#/incidents?severity=low'
    && /^0 of 0 incidents/.test(document.querySelector('main p[role=status]')?.innerText || ''), null, { timeout: T });
  await page.selectOption('#i-severity', 'high');
  await page.fill('#i-tenant', 'acme');
  await page.click('form[role=search] button[type=submit]');
  await row.waitFor({ timeout: T });
  check((await page.evaluate(() => location.hash)) === '#/incidents?severity=high&tenant=acme', 'filters kept in the URL');
  pass('incidents listed with severity, filters and breach mark');

  await row.click();
  const clock = page.locator('#clocks tr[data-clock="ng:authority"]');
  await clock.waitFor({ timeout: T });
  check((await text(page, '#incident-title')) === INCIDENT_TITLE, 'title as the heading, as text');
  check((await clock.locator('.deadline').innerText()) === NG_DEADLINE, `ng:authority deadline: ${await clock.innerText()}`);
  const reference = await clock.locator('.reference').innerText();
  check(reference.startsWith(NG_REFERENCE) && reference.includes('NDPA'), `NDPA reference: ${reference}`);
  check(/^(2 d 23 h|3 d 0 h)$/.test(await clock.locator('.left').innerText()), `time left: ${await clock.locator('.left').innerText()}`);
  check((await clock.innerText()).includes('not yet'), 'not notified yet');
  // The timeline links each step to its event in the log.
  check(await page.locator('#timeline a[href="#/event/122"]').count() === 1, 'opening linked to event 122');
  check(await page.locator('#timeline a[href="#/event/123"]').count() === 1, 'breach linked to event 123');
  await shot(page, 'desktop-incident.png');
  await axe(page, 'desktop incident');
  await touchTargets(page, 'desktop incident');
  pass('incident shows the ng:authority clock with its deadline and NDPA reference');

  await page.click('#pack-ng');
  const link = page.locator('#pack-ng-link');
  await link.waitFor({ timeout: T });
  const [download] = await Promise.all([page.waitForEvent('download'), link.click()]);
  const pack = readFileSync(await download.path(), 'utf8');
  check(pack.includes(NG_REFERENCE) && pack.includes('[TO BE COMPLETED'), 'the pack is the Nigerian draft');
  await page.click('#review-html');
  await page.locator('#review-html-link').waitFor({ timeout: T });
  pass('regulator pack downloaded with the token');
}

async function desktop(browser) {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await ctx.newPage();
  watch(page, 'desktop');
  await signIn(page, 'desktop');
  await underServiceWorker(page);
  await page.reload();
  await overview(page, 'desktop');
  await witnessPolicy(page);
  await shot(page, 'desktop-overview.png');

  await page.click('nav a[href="#/events"]');
  await page.waitForFunction(() => document.querySelectorAll('#results li').length >= 50, null, { timeout: T });
  await page.fill('#f-actor', 'agent-1');
  await page.fill('#f-model', 'claude-y');
  await page.click('form[role=search] button[type=submit]');
  await page.waitForFunction(() => /20 events$/.test(document.querySelector('main p[role=status]')?.innerText || ''), null, { timeout: T });
  const rows = await page.locator('#results li').allInnerTexts();
  check(rows.length === 20 && rows.every((r) => r.includes('agent-1') && r.includes('claude-y')), 'filtered rows match');
  pass('desktop search');

  await page.goto(`${URL_}/#/events`);
  await page.waitForFunction(() => document.querySelectorAll('#results li').length === 50, null, { timeout: T });
  // Endless scroll: reaching the end of the list fetches the next pages.
  for (let i = 0; i < 5 && (await count(page)) < Number(SIZE); i++) {
    await page.mouse.wheel(0, 20000);
    await page.waitForTimeout(400);
  }
  check((await count(page)) === Number(SIZE), `scrolled to all ${SIZE} events, saw ${await count(page)}`);
  pass('desktop endless scroll');
  await page.evaluate(() => window.scrollTo(0, 0));
  await openEvent(page, 'desktop', false);
  await shot(page, 'desktop-event.png');
  await page.goto(`${URL_}/#/event/${process.env.DASH_SIGNED}`);
  await page.waitForFunction(() => /Verified/.test(document.querySelector('#proof-verdict')?.innerText || ''), null, { timeout: T });
  check((await text(page, '#emitter-sig')).startsWith('✓ valid'), 'emitter signature valid');
  await shot(page, 'desktop-signed-event.png');
  pass('emitter signature shown');
  if (process.env.DASH_LARGE) {
    // A large member stays out of the first answer and loads when asked, checked here.
    await page.goto(`${URL_}/#/event/${process.env.DASH_LARGE}`);
    await page.waitForFunction(() => /Verified/.test(document.querySelector('#proof-verdict')?.innerText || ''), null, { timeout: T });
    check((await page.locator('#blob-0 pre').count()) === 0, 'large content loaded before it was asked for');
    await page.click('#load-blob-0');
    await page.locator('#blob-0 .blob-verdict').waitFor({ timeout: T });
    check((await text(page, '#blob-0 .blob-verdict')).startsWith('✓'), 'large content matches its commitment');
    check((await text(page, '#blob-0 pre')).startsWith(process.env.DASH_LARGE_START), 'large content shown');
    pass('large content loads on request, verified');
    await page.goBack();
  }
  await page.goBack();
  await page.locator('#proof-verdict').waitFor({ timeout: T });

  await page.click('nav a[href="#/exports"]');
  await page.fill('#x-actor', 'agent-2');
  await page.click('form button[type=submit]');
  const link = page.locator('#download');
  await link.waitFor({ timeout: T });
  const [download] = await Promise.all([page.waitForEvent('download'), link.click()]);
  const bytes = readFileSync(await download.path());
  check(bytes[0] === 0x1f && bytes[1] === 0x8b && bytes.length > 100, 'export is a gzip bundle');
  pass('export downloaded');

  // A tenant with no events in the period: the report's high finding is
  // on the page (it used to say "No findings" whatever the report held).
  await page.click('nav a[href="#/reports"]');
  await page.fill('input[name=tenant]', 'nobody');
  await page.click('form button[type=submit]');
  await page.locator('#report-download').waitFor({ timeout: T });
  const findings = await text(page, 'main [role=status]');
  check(/high: no events were logged for tenant nobody/.test(findings), `report findings shown: ${findings}`);
  pass('report findings shown');

  await page.click('nav a[href="#/violations"]');
  await page.locator('main h1').waitFor({ timeout: T });
  await shot(page, 'desktop-violations.png');
  // Leave the page on the event (back past violations, reports and
  // exports), to reload it offline.
  await page.goBack();
  await page.goBack();
  await page.goBack();
  await page.locator('#proof-verdict').waitFor({ timeout: T });
  const eventUrl = page.url();
  await incidents(page);
  await page.goto(eventUrl);
  await page.locator('#proof-verdict').waitFor({ timeout: T });
  return { ctx, page };
}

async function phone(browser) {
  const ctx = await browser.newContext({ viewport: { width: 360, height: 740 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
  const page = await ctx.newPage();
  watch(page, 'phone');
  await signIn(page, 'phone');
  await fits360(page, 'overview');
  await underServiceWorker(page);
  await page.reload();
  await overview(page, 'phone');
  await shot(page, 'phone-overview.png');
  await page.click('nav a[href="#/incidents"]');
  await page.click(`#incidents a[href="#/incidents/${INCIDENT}"]`, { timeout: T });
  await page.locator('#clocks tr[data-clock="ng:authority"]').waitFor({ timeout: T });
  await fits360(page, 'incident');
  await axe(page, 'phone incident');
  await touchTargets(page, 'phone incident');
  await shot(page, 'phone-incident.png');
  pass('phone incident fits 360px, accessible');
  await page.click('nav a[href="#/events"]');
  await page.locator('#results li').first().waitFor({ timeout: T });
  await fits360(page, 'events');
  await shot(page, 'phone-events.png');
  await openEvent(page, 'phone', true);
  await fits360(page, 'event');
  await shot(page, 'phone-event.png');
  pass('phone fits 360px');
  return { ctx, page };
}

function b64flip(s) {
  const b = Buffer.from(s, 'base64');
  b[0] ^= 1;
  return b.toString('base64');
}

/// A well-formed verifier key for the same name, but another key.
function otherKey(vkey) {
  const name = vkey.split('+')[0];
  const { publicKey } = generateKeyPairSync('ed25519');
  const raw = Buffer.concat([Buffer.from([1]), Buffer.from(publicKey.export({ format: 'jwk' }).x, 'base64url')]);
  const id = createHash('sha256').update(Buffer.concat([Buffer.from(name), Buffer.from([0x0a]), raw])).digest().subarray(0, 4);
  return `${name}+${id.toString('hex')}+${raw.toString('base64')}`;
}

/// Proofs altered on the way: no service worker here, so the page's own
/// requests are the ones intercepted.
async function tampering(browser) {
  const ctx = await browser.newContext({ serviceWorkers: 'block', viewport: { width: 1024, height: 800 } });
  let mode = 'none';
  await ctx.route('**/v1/events/*', async (route) => {
    if (!route.request().url().includes('proof=true') || mode === 'none') return route.continue();
    const res = await route.fetch();
    const j = await res.json();
    if (mode === 'proof') j.proof.inclusion[0] = b64flip(j.proof.inclusion[0]);
    if (mode === 'checkpoint') {
      const lines = j.proof.checkpoint.split('\n');
      lines[2] = b64flip(lines[2]);
      j.proof.checkpoint = lines.join('\n');
    }
    await route.fulfill({ response: res, json: j });
  });
  const page = await ctx.newPage();
  watch(page, 'tamper');
  await page.addInitScript(([token, vkey]) => {
    sessionStorage.setItem('aiaudit.token', token);
    if (!localStorage.getItem('aiaudit.vkey')) localStorage.setItem('aiaudit.vkey', vkey);
  }, [TOKEN, VKEY]);
  const verdictFor = async (m) => {
    mode = m;
    await page.goto(`${URL_}/#/event/7`);
    await page.reload();
    await page.locator('#proof-verdict').waitFor({ timeout: T });
    return text(page, 'main');
  };
  check((await verdictFor('none')).includes('Verified'), 'untampered control verifies');
  // Every leaf position of the tree, through the page's own verifier module.
  const results = await page.evaluate(async ([n, token]) => {
    const v = await import('/js/verify.js');
    const { pinnedKey } = await import('/js/signin.js');
    const key = await pinnedKey();
    const out = [];
    for (let i = 0; i < n; i++) {
      const ev = await (await fetch(`/v1/events/${i}?proof=true`, { headers: { authorization: `Bearer ${token}` } })).json();
      out.push((await v.verifyEvent(ev, key)).ok);
    }
    return out;
  }, [Number(SIZE), TOKEN]);
  check(results.length === Number(SIZE) && results.every(Boolean), `all proofs verify: ${results.indexOf(false)} failed`);
  pass(`all ${SIZE} proofs verify in the browser`);
  const p = await verdictFor('proof');
  check(p.includes('Verification FAILED') && /✗ inclusion proof/.test(p) && /✓ checkpoint signature/.test(p), `tampered proof: ${p}`);
  await shot(page, 'tampered.png');
  pass('tampered inclusion proof fails');
  const c = await verdictFor('checkpoint');
  check(c.includes('Verification FAILED') && /✗ checkpoint signature/.test(c), `tampered checkpoint: ${c}`);
  pass('tampered checkpoint fails');
  await page.evaluate((k) => localStorage.setItem('aiaudit.vkey', k), otherKey(VKEY));
  const k = await verdictFor('none');
  check(k.includes('Verification FAILED') && k.includes('no signature by the pinned key'), `wrong key: ${k}`);
  pass('wrong pinned key fails');
  await ctx.close();
}

/// What Chromium itself says about installing the app (manifest, icons,
/// service worker). Needs a real profile: Playwright's contexts are incognito.
async function installable() {
  const dir = mkdtempSync(join(tmpdir(), 'aiaudit-profile-'));
  const ctx = await chromium.launchPersistentContext(dir, { executablePath: '/usr/bin/chromium', headless: true, args: FLAGS });
  try {
    const page = ctx.pages()[0] || await ctx.newPage();
    watch(page, 'install');
    await page.goto(`${URL_}/`);
    await underServiceWorker(page);
    const cdp = await ctx.newCDPSession(page);
    const { installabilityErrors } = await cdp.send('Page.getInstallabilityErrors');
    check(installabilityErrors.length === 0, `installable: ${JSON.stringify(installabilityErrors)}`);
    pass('installable');
  } finally {
    await ctx.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function offline(view, label) {
  const { page } = view;
  await page.reload();
  await page.locator('#proof-verdict').waitFor({ timeout: T });
  check((await text(page, '#proof-verdict')).includes('Verified'), 'cached event still verifies');
  check(await page.locator('#offline').isVisible(), 'offline banner shown');
  check((await text(page, '#offline')).includes('saved'), 'banner says the data is saved');
  await page.click('nav a[href="#/overview"]');
  await page.locator('#tree-size').waitFor({ timeout: T });
  check((await text(page, '#tree-size')) === SIZE, 'cached overview');
  check(await page.locator('#offline').isVisible(), 'offline banner on overview');
  // Saved answers look saved: greyed cards that say their age, no live
  // green, and no tamper alarm from answers of different ages.
  await page.waitForFunction(() => document.querySelector('#activity.stale .saved-at') !== null, null, { timeout: T });
  check((await text(page, '#readiness')).includes('when saved'), 'readiness is not shown as live');
  check((await page.locator('.card.stale').count()) >= 3, 'the live-status cards are greyed');
  check((await page.locator('#cp-agreement .badge.bad').count()) === 0, 'no tamper alarm from saved answers');
  await shot(page, `${label}-offline.png`);
  if (label === 'desktop') {
    // Seen online (the ledger serves violations): offline it shows what was cached.
    await page.click('nav a[href="#/violations"]');
    // The overview's cards are still there until the view re-renders: wait
    // for the violations view's own card, not any card.
    await page.waitForFunction(() => (document.querySelector('main h1')?.textContent || '').includes('Violations')
      && document.querySelector('main .card') !== null, null, { timeout: T });
    check((await text(page, 'main h1')).includes('Violations'), 'cached violations view');
  }
  pass(`${label} offline reload`);
}

/// Saved answers hold decrypted events: they belong to the token that
/// fetched them, and go when the ledger reports an erasure or on sign-out.
async function savedDataBoundToToken(browser) {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  watch(page, 'cache');
  await page.addInitScript(([token, vkey]) => {
    sessionStorage.setItem('aiaudit.token', token);
    if (!localStorage.getItem('aiaudit.vkey')) localStorage.setItem('aiaudit.vkey', vkey);
  }, [TOKEN, VKEY]);
  await page.goto(`${URL_}/`);
  await underServiceWorker(page);
  const holders = (url) => page.evaluate(async (u) => {
    const out = [];
    for (const k of await caches.keys()) {
      if (k.startsWith('aiaudit-data') && await (await caches.open(k)).match(u)) out.push(k);
    }
    return out;
  }, url);
  const ownCache = await page.evaluate(async (token) => {
    const d = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(`Bearer ${token}`));
    return 'aiaudit-data-' + [...new Uint8Array(d)].slice(0, 16).map((b) => b.toString(16).padStart(2, '0')).join('');
  }, TOKEN);
  const get = (path, token) => page.evaluate(async ([p, t]) => (await fetch(p, { headers: { authorization: `Bearer ${t}` } })).status, [path, token]);
  const url = `${URL_}/v1/events/3`;
  check(await get('/v1/events/3', TOKEN) === 200, 'event read');
  check(JSON.stringify(await holders(url)) === JSON.stringify([ownCache]), `saved under its own token only: ${await holders(url)}`);
  // Another token asking for the same URL is answered by the ledger (401), never from the first token's cache.
  check(await get('/v1/events/3', 'aat_not-a-token') === 401, 'another token gets the ledger\'s answer');
  check((await holders(url)).length === 1, 'nothing saved for the other token');
  // An erasure: the next answer carries a new epoch and every saved answer goes.
  const erased = await page.evaluate(async (t) => (await fetch('/v1/erase', { method: 'POST',
    headers: { authorization: `Bearer ${t}`, 'content-type': 'application/json' },
    body: JSON.stringify({ tenant: 'acme', subject: 'customer-erased-in-browser' }) })).status, TOKEN);
  check(erased === 200, `erasure answered ${erased}`);
  check(await get('/v1/info', TOKEN) === 200, 'info read');
  check((await holders(url)).length === 0, 'saved event dropped after the erasure');
  check(await get('/v1/events/3', TOKEN) === 200, 'event read again');
  check((await holders(url)).length === 1, 'saved again');
  await page.evaluate(async () => (await import('/js/api.js')).session.signOut());
  const left = await page.evaluate(async () => (await caches.keys()).filter((k) => k.startsWith('aiaudit-data')));
  check(left.length === 0, `nothing saved after sign-out: ${left}`);
  pass('saved answers bound to their token, dropped on erasure and sign-out');
  await ctx.close();
}

run(async (browser) => {
  const d = await desktop(browser);
  const p = await phone(browser);
  await tampering(browser);
  await savedDataBoundToToken(browser);
  await installable();
  console.log('STOP_SERVER');
  const rl = createInterface({ input: process.stdin });
  await new Promise((resolve) => rl.once('line', resolve));
  rl.close();
  await offline(d, 'desktop');
  await offline(p, 'phone');
});
