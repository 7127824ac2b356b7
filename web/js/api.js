// Talking to the ledger: the token, problem+json errors, and the offline
// marker the service worker puts on answers it served from its cache.

const TOKEN = 'aiaudit.token';

/// Cached answers are tenant data: they go with the session that saw them.
async function dropSavedData() {
  if (!self.caches) return;
  for (const k of await caches.keys()) if (k.startsWith('aiaudit-data')) await caches.delete(k);
}

export const session = {
  get token() { return sessionStorage.getItem(TOKEN) || localStorage.getItem(TOKEN) || ''; },
  async signIn(token, remember) {
    await dropSavedData();
    sessionStorage.setItem(TOKEN, token);
    // Remembering puts the secret on disk: only when asked for.
    if (remember) localStorage.setItem(TOKEN, token); else localStorage.removeItem(TOKEN);
  },
  async signOut() {
    sessionStorage.removeItem(TOKEN);
    localStorage.removeItem(TOKEN);
    await dropSavedData();
  },
};

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

const listeners = new Set();
/// Called for every answer with null (fresh from the ledger), the Date a
/// cached answer was saved (offline), or 'unreachable' (offline, nothing saved).
export function onFreshness(f) { listeners.add(f); }
function freshness(state) {
  for (const f of listeners) f(state);
  return state instanceof Date ? state : null;
}
function stateOf(res) {
  if (res.headers.get('x-aiaudit-offline')) return 'unreachable';
  const at = res.headers.get('x-aiaudit-cached-at');
  return at ? new Date(Number(at)) : null;
}

export async function request(path, { raw = false, token = session.token } = {}) {
  const headers = {};
  if (token) headers.authorization = `Bearer ${token}`;
  let res;
  try {
    res = await fetch(path, { headers, cache: 'no-store' });
  } catch {
    freshness('unreachable');
    throw new ApiError(0, { title: 'offline', detail: 'the ledger cannot be reached and nothing is cached for this view' });
  }
  const cachedAt = freshness(stateOf(res));
  if (!res.ok) {
    let problem = null;
    try { problem = await res.json(); } catch { /* not JSON */ }
    throw new ApiError(res.status, problem);
  }
  if (raw) return res;
  const type = res.headers.get('content-type') || '';
  const body = type.includes('json') ? await res.json() : await res.text();
  return { body, cachedAt };
}

export const get = async (path) => (await request(path)).body;

/// `null` on 404: the endpoint does not exist on this ledger (yet).
export async function optional(path) {
  try { return await get(path); } catch (e) {
    if (e.status === 404) return null;
    throw e;
  }
}

/// Sends `body` as JSON (if any) with the token; the answer's JSON, or an
/// ApiError (offline: nothing was sent, so nothing changed).
async function send(method, path, body, token) {
  let res;
  const headers = { authorization: `Bearer ${token}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store' });
  } catch {
    throw new ApiError(0, { title: 'offline', detail: 'the ledger cannot be reached; nothing was changed' });
  }
  let out = null;
  try { out = await res.json(); } catch { /* not JSON */ }
  if (!res.ok) throw new ApiError(res.status, out);
  return out;
}

export const post = (path, body, { token = session.token } = {}) => send('POST', path, body, token);
export const del = (path, { token = session.token } = {}) => send('DELETE', path, undefined, token);
