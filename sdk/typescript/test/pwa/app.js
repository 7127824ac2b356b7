// The test page: an Emitter on the IndexedDB spool "pwa", driven by the test through window.t.
import { Emitter } from "/emitter.js";

const params = new URLSearchParams(location.search);
let em = null;
const token = params.get("token") || localStorage.getItem("token");
localStorage.setItem("token", token);

let onlineEvents = 0;
addEventListener("online", () => { onlineEvents++; });

window.t = {
  onlineEvents: () => onlineEvents,
  async start(opts = {}) {
    em = new Emitter({ url: location.origin, token, spoolDir: "pwa", onError: (e) => console.log("emitter:", e.message), ...opts });
    await em.ready();
    return em.stats();
  },
  async emit(prefix, from, n) {
    const ids = [];
    for (let i = from; i < from + n; i++) {
      ids.push(await em.emit({ id: `${prefix}-${i}`, tenant: "t-pwa", source: { name: "pwa" }, actor: { id: "user-1", type: "user" }, action: "model.invoke",
        ai: { "gen_ai.provider.name": "anthropic", "gen_ai.request.model": "claude-x", "gen_ai.usage.input_tokens": i }, attributes: { n: i, page: prefix } }));
    }
    return ids;
  },
  /** Emits the given events concurrently (so they are group-committed to the spool); resolves with their ids. */
  emitEvents: (events) => Promise.all(events.map((e) => em.emit(e))),
  stats: () => em.stats(),
  flush: (ms) => em.flush({ timeoutMs: ms }),
  close: () => em.close({ timeoutMs: 0 }),
  async swReady() {
    const reg = await navigator.serviceWorker.ready;
    return !!reg.active && !!navigator.serviceWorker.controller;
  },
};

// ?sw=0: no service worker (so no Background Sync drain competing with the page's emitter).
if ("serviceWorker" in navigator && params.get("sw") !== "0") {
  navigator.serviceWorker.register(`/sw.js?token=${encodeURIComponent(token)}`, { type: "module" });
}
document.querySelector("#status").textContent = "ready";
