// Sign-in with a token, and the pinned verifier key: the one thing the
// in-browser verification trusts. It is pasted by the user; the server's
// claim is only offered as a starting point.
import { session, request, get, ApiError } from './api.js';
import { parseVerifierKey, parsePolicy } from './verify.js';
import { h, viewMount, card, errorBox } from './ui.js';

const VKEY = 'aiaudit.vkey';
let parsed = null;

export async function pinnedKey() {
  const v = localStorage.getItem(VKEY);
  if (!v) return null;
  if (!parsed || parsed.text !== v) parsed = { text: v, key: await parseVerifierKey(v) };
  return parsed.key;
}

export const pinnedText = () => localStorage.getItem(VKEY) || '';

// The witness policy (C2SP tlog-policy) the user pinned, if any: which
// witnesses' cosignatures on the checkpoint count, and how many are needed.
const POLICY = 'aiaudit.witness-policy';
let parsedPolicy = null;

export async function pinnedPolicy() {
  const p = localStorage.getItem(POLICY);
  if (!p) return null;
  if (!parsedPolicy || parsedPolicy.text !== p) parsedPolicy = { text: p, policy: await parsePolicy(p) };
  return parsedPolicy.policy;
}

async function serverClaim(token) {
  try { return (await request('/v1/info', { token })).body.verifier_key || ''; } catch { return ''; }
}

function keyField(value) {
  return [
    h('label', { for: 'vkey' }, 'Verifier key to pin'),
    h('textarea', { id: 'vkey', name: 'vkey', rows: 3, spellcheck: 'false', autocomplete: 'off' }, value),
    h('p', { class: 'hint', id: 'vkey-hint' }, 'Prefilled with the key the server claims. Pin the one you trust (from the log operator, out of band): proofs are checked against it, not against the server\'s word.'),
  ];
}

async function pin(text) {
  await parseVerifierKey(text); // refuse a malformed key before storing it
  localStorage.setItem(VKEY, text.trim());
}

export async function signIn(done) {
  const mount = viewMount();
  const status = h('div', { role: 'status', 'aria-live': 'polite' });
  const form = h('form', { class: 'card signin', 'aria-labelledby': 'signin-title' },
    h('h1', { id: 'signin-title' }, 'Sign in'),
    h('label', { for: 'token' }, 'API token (auditor or admin)'),
    h('input', { id: 'token', name: 'token', type: 'password', autocomplete: 'current-password', required: true }),
    h('div', { class: 'check' },
      h('input', { id: 'remember', type: 'checkbox' }),
      h('label', { for: 'remember' }, 'Remember on this device (stores the token in this browser)')),
    ...keyField(pinnedText()),
    h('button', { type: 'submit' }, 'Sign in'),
    status);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const token = form.token.value.trim();
    status.replaceChildren('Checking…');
    try {
      // A search the token must be allowed to make: proves it is an auditor or admin token.
      await request('/v1/events?limit=1', { token });
      if (form.vkey.value.trim()) await pin(form.vkey.value);
      await session.signIn(token, form.remember.checked);
      done();
    } catch (err) {
      const msg = err instanceof ApiError && err.status === 401 ? new Error('token not accepted') : err;
      status.replaceChildren(errorBox(msg));
    }
  });
  mount(form);
  form.token.focus();
  if (!pinnedText()) {
    const claim = await serverClaim('');
    if (claim && !form.vkey.value) form.vkey.value = claim;
  }
}

export async function settings({ rerender }) {
  const mount = viewMount();
  const status = h('div', { role: 'status', 'aria-live': 'polite' });
  const form = h('form', { class: 'card' }, h('h1', {}, 'Pinned key'), ...keyField(pinnedText()),
    h('button', { type: 'submit' }, 'Pin this key'), status);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    try { await pin(form.vkey.value); status.replaceChildren('Pinned.'); } catch (err) { status.replaceChildren(errorBox(err)); }
  });
  const claim = h('button', { type: 'button', class: 'secondary', onclick: async () => { form.vkey.value = (await get('/v1/info')).verifier_key; } }, 'Fill in the server\'s claim');
  form.insertBefore(claim, status);
  const pStatus = h('div', { role: 'status', 'aria-live': 'polite' });
  const pForm = h('form', { class: 'card' }, h('h2', {}, 'Witness policy'),
    h('label', { for: 'policy' }, 'C2SP tlog-policy (log, witness, group and quorum lines), from your auditors'),
    h('textarea', { id: 'policy', name: 'policy', rows: 6, spellcheck: 'false', autocomplete: 'off' }, localStorage.getItem(POLICY) || ''),
    h('p', { class: 'hint' }, 'The overview then shows which of its witnesses cosigned the checkpoint, and whether its quorum did. Empty: no policy.'),
    h('button', { type: 'submit' }, 'Pin this policy'), pStatus);
  pForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const text = pForm.policy.value.trim();
    try {
      if (text) { await parsePolicy(text); localStorage.setItem(POLICY, text); } else localStorage.removeItem(POLICY);
      pStatus.replaceChildren(text ? 'Pinned.' : 'No policy.');
    } catch (err) { pStatus.replaceChildren(errorBox(err)); }
  });
  const out = card('Session', h('p', {}, 'Signing out forgets the token and the data saved for offline use.'),
    h('button', { type: 'button', id: 'signout', onclick: async () => { await session.signOut(); location.hash = '#/'; rerender(); } }, 'Sign out'));
  mount(form, pForm, out);
}
