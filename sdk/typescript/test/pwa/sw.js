// The PWA's service worker: serves the app shell from a cache (so the page reloads
// offline) and drains the emitter's spool on Background Sync.
import { handleBackgroundSync, SYNC_TAG } from "/emitter.js";

const SHELL = ["/", "/app.js", "/emitter.js", "/manifest.webmanifest"];
const token = new URL(self.location.href).searchParams.get("token");

self.addEventListener("install", (e) => {
  e.waitUntil(caches.open("shell-v1").then((c) => c.addAll(SHELL)).then(() => self.skipWaiting()));
});
self.addEventListener("activate", (e) => e.waitUntil(self.clients.claim()));
self.addEventListener("fetch", (e) => {
  const url = new URL(e.request.url);
  if (e.request.method !== "GET" || url.origin !== self.location.origin || url.pathname.startsWith("/v1/")) return;
  e.respondWith(caches.match(url.pathname).then((hit) => hit || fetch(e.request)));
});

handleBackgroundSync(self, { url: self.location.origin, token, spoolDir: "pwa" });
self.addEventListener("sync", (e) => { if (e.tag === SYNC_TAG) console.log("sw: background sync"); });
