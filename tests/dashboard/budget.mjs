// The dashboard's performance budget, measured (not a pass/fail test):
// the bytes of the first load and the time until each page is interactive,
// against a running ledger. docs/measurements/dashboard-budget.sh fills a
// ledger with 1 M events and runs this; the figures go to docs/dashboard.md.
//
//   DASH_URL=http://127.0.0.1:7381 DASH_TOKEN=... DASH_VKEY=... DASH_EVENT=500000 \
//     node tests/dashboard/budget.mjs
//
// "Interactive" is when the page's content is drawn (its ready element is
// there) and nothing on it still says "Loading…": from the click on the
// navigation link (a hash change, as a user moves between pages) and from a
// reload of that page (the HTTP cache warm, the JavaScript started anew).
import { chromium } from 'playwright-core';
import { FLAGS, T } from './common.mjs';

const URL_ = process.env.DASH_URL;
const TOKEN = process.env.DASH_TOKEN;
const VKEY = process.env.DASH_VKEY;
const EVENT = process.env.DASH_EVENT || '0';
const RUNS = Number(process.env.DASH_RUNS || 5);

const PAGES = [
  ['overview', '#activity-chart canvas'],
  ['events', '#results li'],
  [`event/${EVENT}`, '#proof-verdict'],
  ['violations', '#violations-status'],
  ['incidents', '#incidents'],
  ['reports', 'form'],
  ['exports', 'form'],
  ['admin', '#tokens tbody tr'],
  ['settings', '#signout'],
];

async function interactive(page, ready) {
  await page.locator(ready).first().waitFor({ timeout: T });
  await page.waitForFunction(() => !document.querySelector('main').innerText.includes('Loading…'), null, { timeout: T, polling: 10 });
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const SHELL = (url) => !/\/(v1|checkpoint|readyz|healthz|metrics)(\/|\?|$)/.test(new URL(url).pathname);

const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: FLAGS });
try {
  // First load: a new profile, nothing cached, the overview.
  const firsts = [];
  let shellBytes = 0, shellFiles = 0;
  for (let i = 0; i < RUNS; i++) {
    const ctx = await browser.newContext({ viewport: { width: 360, height: 740 }, isMobile: true, hasTouch: true, serviceWorkers: 'block' });
    const page = await ctx.newPage();
    await page.addInitScript(([t, k]) => { sessionStorage.setItem('aiaudit.token', t); localStorage.setItem('aiaudit.vkey', k); }, [TOKEN, VKEY]);
    const cdp = await ctx.newCDPSession(page);
    await cdp.send('Network.enable');
    const urls = new Map();
    let bytes = 0, files = 0;
    cdp.on('Network.responseReceived', (e) => urls.set(e.requestId, e.response.url));
    cdp.on('Network.loadingFinished', (e) => {
      const u = urls.get(e.requestId);
      if (u && SHELL(u)) { bytes += e.encodedDataLength; files += 1; }
    });
    const start = Date.now();
    await page.goto(`${URL_}/#/overview`);
    await interactive(page, PAGES[0][1]);
    firsts.push(Date.now() - start);
    await page.waitForLoadState('networkidle');
    shellBytes = bytes; shellFiles = files;
    await ctx.close();
  }
  console.log(`first load (new profile, 360 px, overview): median ${median(firsts)} ms, max ${Math.max(...firsts)} ms; ` +
    `shell ${shellBytes} bytes over the wire in ${shellFiles} files (headers included)`);

  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await ctx.newPage();
  await page.addInitScript(([t, k]) => { sessionStorage.setItem('aiaudit.token', t); localStorage.setItem('aiaudit.vkey', k); }, [TOKEN, VKEY]);
  await page.goto(`${URL_}/#/settings`);
  await interactive(page, '#signout');
  console.log('| page | from the nav link, median (max) | reload, median (max) |');
  console.log('|---|---|---|');
  for (const [route, ready] of PAGES) {
    const nav = [], reload = [];
    // Each time from another page (a cheap one).
    const [away, awayReady] = route === 'exports' ? ['settings', '#signout'] : ['exports', 'form'];
    for (let i = 0; i < RUNS; i++) {
      await page.evaluate((r) => { location.hash = `#/${r}`; }, away);
      await interactive(page, awayReady);
      // Emptied first, so that only the new page's content can count as ready.
      let start = Date.now();
      await page.evaluate((r) => { document.querySelector('main').replaceChildren(); location.hash = `#/${r}`; }, route);
      await interactive(page, ready);
      nav.push(Date.now() - start);
      start = Date.now();
      await page.reload();
      await interactive(page, ready);
      reload.push(Date.now() - start);
    }
    console.log(`| ${route} | ${median(nav)} ms (${Math.max(...nav)}) | ${median(reload)} ms (${Math.max(...reload)}) |`);
  }
  await ctx.close();
} finally {
  await browser.close();
}
