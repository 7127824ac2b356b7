// The dashboard's entry point: service worker, sign-in gate, hash router.
import { session, onFreshness } from './js/api.js';
import { nextRoute, isCurrentRoute } from './js/ui.js';
import { signIn, settings } from './js/signin.js';
import { overview } from './js/overview.js';
import { events } from './js/events.js';
import { eventDetail } from './js/event.js';
import { reports, exports } from './js/sections.js';
import { violations } from './js/violations.js';
import { admin } from './js/admin.js';
import { incidents } from './js/incidents.js';

const views = { overview, events, event: eventDetail, violations, incidents, reports, exports, admin, settings };
let cleanup = null;

if ('serviceWorker' in navigator) {
  navigator.serviceWorker.register('/sw.js').catch((e) => console.warn('service worker:', e.message));
}

// One banner for the whole page: shown while answers come from the cache.
onFreshness((state) => {
  const el = document.getElementById('offline');
  if (state === null) { el.hidden = true; return; }
  if (state === 'unreachable') {
    // Keep a "saved at" message already shown: it says more.
    if (el.hidden) { el.hidden = false; el.textContent = 'Offline: the ledger cannot be reached.'; }
    return;
  }
  el.hidden = false;
  el.textContent = `Offline: showing data saved ${state.toLocaleString()}. It may be out of date.`;
});

// Each route has a number: a view that finishes after a newer route began
// is stopped at once, so no poller outlives its page, and draws nothing
// over the newer page (ui.js viewMount).
async function route() {
  const mine = nextRoute();
  if (cleanup) { cleanup(); cleanup = null; }
  const nav = document.getElementById('nav');
  if (!session.token) {
    nav.hidden = true;
    // Signed in: one route to the overview (setting the hash routes by itself).
    return signIn(() => { if (location.hash === '#/overview') route(); else location.hash = '#/overview'; });
  }
  nav.hidden = false;
  const [path, query = ''] = location.hash.replace(/^#\/?/, '').split('?');
  const [name, arg] = path.split('/');
  const view = views[name] || overview;
  for (const a of nav.querySelectorAll('a')) {
    if (a.getAttribute('href') === `#/${name || 'overview'}`) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  document.getElementById('offline').hidden = true;
  const done = (await view({ arg, params: new URLSearchParams(query), rerender: route })) || null;
  if (!isCurrentRoute(mine)) { if (done) done(); return; }
  cleanup = done;
  // After a route change, keyboard and screen-reader users start at the content.
  if (document.activeElement === document.body || document.activeElement?.closest('nav')) {
    document.getElementById('main').focus({ preventScroll: true });
  }
}

// The skip link moves the focus without touching the hash, which is the router's.
document.querySelector('.skip').addEventListener('click', (e) => {
  e.preventDefault();
  document.getElementById('main').focus();
});

window.addEventListener('hashchange', route);
route();
