// Tokens and emitters, for admins: create a token with a role, tenants and
// an expiry (its secret shown once), revoke one, register an emitter's
// signing key. Every change is the API's (POST/DELETE /v1/tokens,
// POST /v1/emitters), refused there for a token that may not make it.
import { get, post, del } from './api.js';
import { h, viewMount, card, errorBox, when } from './ui.js';

const EXPIRIES = [['1d', '1 day'], ['7d', '7 days'], ['30d', '30 days'], ['90d', '90 days'], ['365d', '1 year']];
const ROLES = [['auditor', 'auditor: reads its tenants'], ['emitter', 'emitter: appends to its tenants'], ['admin', 'admin: everything in its tenants']];

/// "acme, globex" → ["acme", "globex"]; "*" stays "*".
export function tenantList(text) {
  return text.split(/[\s,]+/).map((t) => t.trim()).filter(Boolean);
}

const unix = (s) => (s == null ? '–' : when(new Date(s * 1000).toISOString()));

function field(id, label, control) {
  return h('div', { class: 'field' }, h('label', { for: id }, label), control);
}

function tokensTable(tokens, refresh) {
  if (!tokens.length) return h('p', { class: 'muted' }, 'No tokens.');
  return h('div', { class: 'table-wrap' }, h('table', { id: 'tokens' },
    h('thead', {}, h('tr', {}, ['Id', 'Role', 'Tenants', 'Created', 'Expires', 'State', ''].map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, tokens.map((t) => {
      const out = h('span', { role: 'status' });
      const revoke = h('button', { type: 'button', class: 'secondary', 'data-revoke': t.id, hidden: t.revoked }, 'Revoke');
      // Two steps: a stray tap does not lock a service out.
      revoke.addEventListener('click', async () => {
        if (revoke.dataset.armed !== 'yes') {
          revoke.dataset.armed = 'yes';
          revoke.textContent = `Confirm: revoke ${t.id}`;
          return;
        }
        revoke.disabled = true;
        try { await del(`/v1/tokens/${encodeURIComponent(t.id)}`); await refresh(); } catch (e) { out.replaceChildren(errorBox(e)); revoke.disabled = false; }
      });
      const expired = t.expires_unix != null && t.expires_unix * 1000 < Date.now();
      return h('tr', { 'data-token': t.id },
        h('td', { class: 'mono', 'data-label': 'Id' }, t.id),
        h('td', { 'data-label': 'Role' }, t.role),
        h('td', { 'data-label': 'Tenants' }, (t.tenants || []).join(', ')),
        h('td', { 'data-label': 'Created' }, unix(t.created_unix)),
        h('td', { 'data-label': 'Expires' }, t.expires_unix == null ? 'never' : unix(t.expires_unix)),
        h('td', { 'data-label': 'State', class: 'state' }, t.revoked ? 'revoked' : expired ? 'expired' : 'active'),
        h('td', {}, revoke, out));
    }))));
}

function emittersTable(emitters) {
  if (!emitters.length) return h('p', { class: 'muted' }, 'No emitters registered.');
  return h('div', { class: 'table-wrap' }, h('table', { id: 'emitters' },
    h('thead', {}, h('tr', {}, ['Name', 'Tenants', 'Registered', 'Verifier key'].map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, emitters.map((e) => h('tr', { 'data-emitter': e.name },
      h('td', { 'data-label': 'Name' }, e.name),
      h('td', { 'data-label': 'Tenants' }, (e.tenants || []).length ? e.tenants.join(', ') : 'every tenant'),
      h('td', { 'data-label': 'Registered' }, unix(e.registered_unix)),
      h('td', { 'data-label': 'Verifier key', class: 'mono detail' }, e.verifier_key))))));
}

export async function admin() {
  const mount = viewMount();
  const tokensBox = h('div', { id: 'tokens-box' }, h('p', { class: 'muted', role: 'status' }, 'Loading…'));
  const emittersBox = h('div', { id: 'emitters-box' }, h('p', { class: 'muted', role: 'status' }, 'Loading…'));

  const refresh = async () => {
    try {
      tokensBox.replaceChildren(tokensTable((await get('/v1/tokens')).tokens || [], refresh));
    } catch (e) {
      tokensBox.replaceChildren(e.status === 403 ? h('p', { class: 'muted' }, 'Tokens: this needs an admin token.') : errorBox(e));
    }
    try {
      emittersBox.replaceChildren(emittersTable((await get('/v1/emitters')).emitters || []));
    } catch (e) {
      emittersBox.replaceChildren(e.status === 403 ? h('p', { class: 'muted' }, 'Emitters: this needs an admin token.') : errorBox(e));
    }
  };

  // Create a token: the secret is shown once, here, and never again.
  const created = h('div', { role: 'status', 'aria-live': 'polite', id: 'token-created' });
  const role = h('select', { id: 't-role', name: 'role' }, ROLES.map(([v, l]) => h('option', { value: v }, l)));
  const tenants = h('input', { id: 't-tenants', name: 'tenants', placeholder: 'acme, globex (or *)', autocomplete: 'off', required: true });
  const expires = h('select', { id: 't-expires', name: 'expires' }, EXPIRIES.map(([v, l]) => h('option', { value: v, selected: v === '90d' }, l)));
  const tokenForm = h('form', { 'aria-label': 'Create a token' },
    h('div', { class: 'filter-grid' }, field('t-role', 'Role', role), field('t-tenants', 'Tenants', tenants), field('t-expires', 'Expires in', expires)),
    h('button', { type: 'submit', id: 'create-token' }, 'Create token'), created);
  tokenForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    created.replaceChildren('Creating…');
    try {
      const t = await post('/v1/tokens', { role: role.value, tenants: tenantList(tenants.value), expires: expires.value });
      const secret = h('input', { id: 'new-token', class: 'mono', value: t.token, readonly: true, 'aria-label': 'The new token' });
      const copy = h('button', { type: 'button', class: 'secondary' }, 'Copy');
      copy.addEventListener('click', async () => {
        secret.select();
        try { await navigator.clipboard.writeText(t.token); copy.textContent = 'Copied'; } catch { copy.textContent = 'Select and copy it'; }
      });
      created.replaceChildren(h('div', { class: 'card secret' },
        h('p', {}, h('strong', {}, `Token ${t.id} created. `), 'Copy it now: it is shown only once, and the ledger keeps only its hash.'),
        secret, copy));
      tenants.value = '';
      await refresh();
    } catch (err) {
      created.replaceChildren(errorBox(err));
    }
  });

  // Register an emitter's signing key (aiaudit emitter keygen prints it).
  const registered = h('div', { role: 'status', 'aria-live': 'polite', id: 'emitter-registered' });
  const name = h('input', { id: 'e-name', name: 'name', autocomplete: 'off', required: true, placeholder: 'edge-gw-7' });
  const key = h('input', { id: 'e-key', name: 'public_key', autocomplete: 'off', required: true, placeholder: 'edge-gw-7+1a2b3c4d+AQ…' });
  const eTenants = h('input', { id: 'e-tenants', name: 'tenants', autocomplete: 'off', placeholder: 'acme (empty: every tenant)' });
  const emitterForm = h('form', { 'aria-label': 'Register an emitter' },
    h('div', { class: 'filter-grid' }, field('e-name', 'Name', name), field('e-key', 'Verifier key', key), field('e-tenants', 'Tenants', eTenants)),
    h('button', { type: 'submit', id: 'register-emitter' }, 'Register emitter'), registered);
  emitterForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      const body = { name: name.value.trim(), public_key: key.value.trim() };
      const ts = tenantList(eTenants.value);
      if (ts.length) body.tenants = ts;
      await post('/v1/emitters', body);
      registered.replaceChildren(h('p', {}, `Emitter ${body.name} registered.`));
      name.value = ''; key.value = ''; eTenants.value = '';
      await refresh();
    } catch (err) {
      registered.replaceChildren(errorBox(err));
    }
  });

  mount(h('h1', {}, 'Tokens and emitters'),
    card('Create a token', tokenForm),
    card('Tokens', tokensBox),
    card('Register an emitter', emitterForm),
    card('Emitters', emittersBox));
  await refresh();
}
