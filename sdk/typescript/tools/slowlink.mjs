#!/usr/bin/env node
// A slow, lossy link between a client and a TCP server: limits bandwidth (per
// direction, shared by every connection), adds one-way latency, and cuts a fraction
// of requests mid-way (the connection is destroyed after part of the request went
// through, as a flaky mobile link does).
//
//   node tools/slowlink.mjs --listen 127.0.0.1:P --upstream 127.0.0.1:Q --kbps 64 --latency-ms 300 --drop 0.05
//
// A "request" is the first burst of client bytes after the server last spoke on that
// connection. Prints counters every --report-s seconds (default 5) and at exit.
// Also a module: startSlowlink({ listen, upstream, kbps, latencyMs, drop, dropFirst }).
import { createServer, connect } from "node:net";
import { fileURLToPath } from "node:url";

const PIECE = 1024;
const HIGH_WATER = 64 * 1024;

function hostPort(s) {
  const i = s.lastIndexOf(":");
  return { host: s.slice(0, i) || "127.0.0.1", port: Number(s.slice(i + 1)) };
}

export async function startSlowlink({ listen = "127.0.0.1:0", upstream, kbps = 64, latencyMs = 300, drop = 0.05, dropFirst = 0, random = Math.random }) {
  const up = hostPort(upstream);
  const bytesPerMs = (kbps * 1000) / 8 / 1000;
  const stats = { connections: 0, requests: 0, drops: 0, bytesUp: 0, bytesDown: 0 };
  const lastFinish = { up: 0, down: 0 };
  const sockets = new Set();

  // Sends `chunk` from one side to `to` through the link, in order, at the link's pace.
  function carry(dir, chunk, from, to, state) {
    for (let o = 0; o < chunk.length; o += PIECE) {
      const piece = chunk.subarray(o, o + PIECE);
      const now = Date.now();
      const start = Math.max(now, lastFinish[dir]);
      lastFinish[dir] = start + piece.length / bytesPerMs;
      const at = lastFinish[dir] + latencyMs;
      state.queued += piece.length;
      if (state.queued > HIGH_WATER) from.pause();
      setTimeout(() => {
        state.queued -= piece.length;
        if (state.queued <= HIGH_WATER / 2) from.resume();
        if (to.destroyed) return;
        stats[dir === "up" ? "bytesUp" : "bytesDown"] += piece.length;
        to.write(piece);
      }, Math.max(0, at - now));
    }
  }

  const server = createServer((client) => {
    stats.connections++;
    const server = connect(up.port, up.host);
    sockets.add(client); sockets.add(server);
    const upState = { queued: 0 }, downState = { queued: 0 };
    let newRequest = true;
    const kill = () => { client.destroy(); server.destroy(); };
    client.on("data", (d) => {
      if (newRequest) {
        newRequest = false;
        stats.requests++;
        if (stats.requests <= dropFirst || random() < drop) {
          // Cut mid-request: part of it crosses, then the link fails.
          stats.drops++;
          const part = d.subarray(0, Math.max(1, Math.floor(d.length * random())));
          carry("up", part, client, server, upState);
          setTimeout(kill, latencyMs + part.length / bytesPerMs);
          client.pause();
          return;
        }
      }
      carry("up", d, client, server, upState);
    });
    server.on("data", (d) => { newRequest = true; carry("down", d, server, client, downState); });
    const end = (other, state) => () => { const wait = () => (state.queued > 0 ? setTimeout(wait, 20) : other.end()); wait(); };
    client.on("end", end(server, upState));
    server.on("end", end(client, downState));
    client.on("error", kill); server.on("error", kill);
    client.on("close", () => { sockets.delete(client); server.destroy(); });
    server.on("close", () => { sockets.delete(server); client.destroy(); });
  });
  const l = hostPort(listen);
  await new Promise((resolve, reject) => { server.once("error", reject); server.listen(l.port, l.host, resolve); });
  const port = server.address().port;
  return {
    port, url: `http://127.0.0.1:${port}`, stats,
    close: () => new Promise((r) => { for (const s of sockets) s.destroy(); server.close(() => r()); }),
  };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const args = Object.create(null);
  for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, "")] = process.argv[i + 1];
  if (!args.upstream) {
    console.error("usage: slowlink.mjs --listen HOST:PORT --upstream HOST:PORT [--kbps 64] [--latency-ms 300] [--drop 0.05] [--report-s 5]");
    process.exit(2);
  }
  const link = await startSlowlink({ listen: args.listen ?? "127.0.0.1:0", upstream: args.upstream, kbps: Number(args.kbps ?? 64),
    latencyMs: Number(args["latency-ms"] ?? 300), drop: Number(args.drop ?? 0.05), dropFirst: Number(args["drop-first"] ?? 0) });
  const report = () => console.log(JSON.stringify({ listen: link.port, ...link.stats }));
  console.log(`slowlink listening on 127.0.0.1:${link.port} -> ${args.upstream}`);
  setInterval(report, Number(args["report-s"] ?? 5) * 1000).unref();
  for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => { report(); process.exit(0); });
}
