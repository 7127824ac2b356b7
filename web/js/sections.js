// Violations, compliance reports and exports. The first two are served by
// endpoints other work adds; until a ledger has them they say so.
import { optional, request } from './api.js';
import { h, mount, card, errorBox, notAvailable, fields } from './ui.js';
import { filterFields, formParams } from './events.js';

function table(items) {
  if (!items.length) return h('p', { class: 'muted' }, 'None.');
  return h('ul', { class: 'records' }, items.map((it) => {
    const link = it.index != null ? h('a', { href: `#/event/${it.index}` }, `event #${it.index}`) : null;
    return h('li', {}, link, fields(it));
  }));
}

async function listing(title, path, key) {
  mount(h('h1', {}, title), h('p', { class: 'muted', role: 'status' }, 'Loading…'));
  let body;
  try { body = await optional(path); } catch (e) { mount(h('h1', {}, title), errorBox(e)); return; }
  if (body === null) { mount(h('h1', {}, title), notAvailable(title)); return; }
  const items = Array.isArray(body) ? body : body[key] || [];
  mount(h('h1', {}, title), card(`${items.length} ${title.toLowerCase()}`, table(items)));
}

export const violations = () => listing('Violations', '/v1/violations', 'violations');
export const reports = () => listing('Reports', '/v1/reports', 'reports');

export async function exports({ params }) {
  const status = h('div', { role: 'status', 'aria-live': 'polite' });
  const form = h('form', { class: 'card filters', 'aria-label': 'Export' },
    h('p', { class: 'hint' }, 'An export bundle holds every matching event with its inclusion proof and the signed checkpoint; check it offline with aiaudit verify --bundle.'),
    h('div', { class: 'filter-grid' }, ...filterFields(params, 'x')),
    h('button', { type: 'submit' }, 'Start export'), status);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    status.replaceChildren('Building the bundle…');
    try {
      // A plain link cannot carry the token, so fetch and hand over a blob.
      const res = await request(`/v1/export?${formParams(form)}`, { raw: true });
      const blob = await res.blob();
      const url = URL.createObjectURL(blob);
      status.replaceChildren(h('a', { href: url, download: 'aiaudit-export.tar.gz', id: 'download', class: 'button' },
        `Download aiaudit-export.tar.gz (${blob.size.toLocaleString()} bytes)`));
    } catch (err) {
      status.replaceChildren(errorBox(err));
    }
  });
  mount(h('h1', {}, 'Exports'), form);
}

