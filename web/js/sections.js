// Compliance reports and exports. A ledger without the reports endpoint
// says so.
import { request } from './api.js';
import { h, viewMount, card, errorBox, notAvailable } from './ui.js';
import { filterFields, formParams } from './events.js';

/** Compliance report: a summary on screen, the full report (HTML, Markdown or JSON) to download. */
export async function reports({ params }) {
  const mount = viewMount();
  const status = h('div', { role: 'status', 'aria-live': 'polite' });
  const input = (name, label, type = 'text', value = '') =>
    h('label', {}, label, h('input', { name, type, value, required: name === 'tenant' ? '' : null }));
  const form = h('form', { class: 'card filters', 'aria-label': 'Compliance report' },
    h('p', { class: 'hint' }, 'EU AI Act record keeping (Art. 12, 19, 26, 14), integrity, violations and erasures for one tenant over a period (default: the last 30 days).'),
    h('div', { class: 'filter-grid' },
      input('tenant', 'Tenant', 'text', params.get('tenant') || ''),
      input('from', 'From (RFC 3339)'), input('to', 'To (RFC 3339)'),
      h('label', {}, 'Format', h('select', { name: 'format' },
        h('option', { value: 'html' }, 'HTML (charts)'), h('option', { value: 'md' }, 'Markdown'), h('option', { value: 'json' }, 'JSON')))),
    h('button', { type: 'submit' }, 'Build report'), status);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v && k !== 'format') q.set(k, v);
    const format = new FormData(form).get('format');
    status.replaceChildren('Building the report…');
    try {
      q.set('format', 'json');
      // request() answers { body, cachedAt }: the report is the body.
      const summary = (await request(`/v1/reports/compliance?${q}`)).body;
      q.set('format', format);
      const res = await request(`/v1/reports/compliance?${q}`, { raw: true });
      const url = URL.createObjectURL(await res.blob());
      const ext = format === 'md' ? 'md' : format;
      const findings = summary.findings || [];
      status.replaceChildren(
        card('Findings', findings.length
          ? h('ul', {}, findings.map((f) => h('li', {}, `${f.severity}: ${f.text}`)))
          : h('p', { class: 'muted' }, 'No findings.')),
        h('a', { href: url, download: `aiaudit-compliance.${ext}`, id: 'report-download', class: 'button' }, `Download the ${format.toUpperCase()} report`));
    } catch (err) {
      status.replaceChildren(err && err.status === 404 ? notAvailable('Compliance reports') : errorBox(err));
    }
  });
  mount(h('h1', {}, 'Compliance reports'), form);
}

export async function exports({ params }) {
  const mount = viewMount();
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

