#!/usr/bin/env python3
"""Soak: `aiaudit serve` under a steady load for a long time (docs/reliability.md).

    python3 deploy/bench/soak.py [--minutes 30] [--rate 19000] [--size 256]

Starts a ledger on a throwaway data directory, drives it with
`aiaudit bench --rate` (an open-loop rate: half the measured maximum by
default), and every --interval seconds samples the server's resident memory
(/proc), the acknowledgement latency of that window (p50/p99, from the
deltas of the server's latency histogram in /metrics), the ingest rate and
the disk used. Ends with a verdict on memory and latency drift (first
quarter against last quarter) and `aiaudit verify` of the whole log.
Needs a release build (cargo build --release). Standard library only.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LATENCY = "aiaudit_event_processing_latency_seconds"
PROCESSED = "aiaudit_events_processed_total"


def metrics(url):
    """Histogram buckets (le -> cumulative count) and the processed total."""
    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    buckets, processed = {}, 0.0
    for line in text.splitlines():
        if line.startswith(LATENCY + "_bucket{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[float("inf") if le == "+Inf" else float(le)] = float(line.rsplit(" ", 1)[1])
        elif line.startswith(PROCESSED):
            processed += float(line.rsplit(" ", 1)[1])
    return buckets, processed


def quantile(before, after, q):
    """Upper bound of the bucket holding quantile q of the window's requests."""
    edges = sorted(after)
    deltas = [after[e] - before.get(e, 0.0) for e in edges]
    total = deltas[-1] if deltas else 0.0
    if total <= 0:
        return None
    for e, cumulative in zip(edges, deltas):
        if cumulative >= q * total:
            return e
    return edges[-1]


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def disk_mib(path):
    total = 0
    for d, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(d, name))
            except OSError:
                pass
    return total / 2**20


def ms(v):
    return "-" if v is None else ("inf" if v == float("inf") else f"{v * 1000:.1f}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=30)
    p.add_argument("--rate", type=int, default=19000, help="events/s offered")
    p.add_argument("--size", type=int, default=256, help="bytes of JSON per event")
    p.add_argument("--interval", type=float, default=30, help="seconds between samples")
    p.add_argument("--port", type=int, default=7399)
    p.add_argument("--bin", default=os.path.join(ROOT, "target/release/aiaudit"))
    p.add_argument("--out", help="also write the samples and verdict here (JSON)")
    a = p.parse_args()

    work = tempfile.mkdtemp(prefix="aiaudit-soak-")
    data = os.path.join(work, "data")
    url = f"http://127.0.0.1:{a.port}"
    env = dict(os.environ, AIAUDIT_LOG="warn")
    server = subprocess.Popen(
        [a.bin, "serve", "--data-dir", data, "--listen", f"127.0.0.1:{a.port}",
         "--rate-limit-events-per-sec", "0"],
        env=env, stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "server.log"), "w"))
    bench = None
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(url + "/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        token = open(os.path.join(data, "admin.token")).read().strip()
        events = int(a.rate * a.minutes * 60)
        bench = subprocess.Popen(
            [a.bin, "bench", "--url", url, "--token", token, "--events", str(events),
             "--batch", "100", "--concurrency", "8", "--size", str(a.size),
             "--rate", str(a.rate), "--json"],
            stdout=subprocess.PIPE, text=True)
        print(f"soak: {a.rate} events/s of {a.size} B for {a.minutes} min ({events} events); "
              f"server pid {server.pid}, data in {data}", flush=True)
        print(f"{'min':>6} {'events/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'rss MiB':>8} {'disk MiB':>9}",
              flush=True)
        samples = []
        start = time.time()
        before, done_before = metrics(url)
        last = start
        while bench.poll() is None:
            time.sleep(a.interval)
            if bench.poll() is not None:
                break  # a window cut short by the end of the load
            now = time.time()
            after, done = metrics(url)
            s = {
                "minute": round((now - start) / 60, 2),
                "events_per_sec": round((done - done_before) / (now - last)),
                "p50_s": quantile(before, after, 0.50),
                "p99_s": quantile(before, after, 0.99),
                "rss_mib": round(rss_mib(server.pid), 1),
                "disk_mib": round(disk_mib(data)),
            }
            samples.append(s)
            print(f"{s['minute']:6.1f} {s['events_per_sec']:9d} {ms(s['p50_s']):>7} "
                  f"{ms(s['p99_s']):>7} {s['rss_mib']:8.1f} {s['disk_mib']:9d}", flush=True)
            before, done_before, last = after, done, now
        result = json.loads(bench.stdout.read().strip().splitlines()[-1])
        quarter = max(1, len(samples) // 4)
        first, final = samples[:quarter], samples[-quarter:]

        def avg(xs, k):
            vals = [x[k] for x in xs if x[k] is not None and x[k] != float("inf")]
            return sum(vals) / len(vals) if vals else None

        # Steady state: the first samples include the allocator warming up.
        warm = samples[1:quarter + 1] if len(samples) > quarter + 1 else first
        verify = subprocess.run([a.bin, "verify", "--url", url, "--token", token],
                                capture_output=True, text=True)
        verdict = {
            "bench": result,
            "rss_mib_first_quarter": avg(warm, "rss_mib"),
            "rss_mib_last_quarter": avg(final, "rss_mib"),
            "rss_mib_max": max(s["rss_mib"] for s in samples) if samples else None,
            "p99_ms_first_quarter": (avg(warm, "p99_s") or 0) * 1000,
            "p99_ms_last_quarter": (avg(final, "p99_s") or 0) * 1000,
            "verify_ok": verify.returncode == 0,
            "disk_mib": samples[-1]["disk_mib"] if samples else None,
            "disk_mib_by_part": {name: round(disk_mib(os.path.join(data, name)))
                                 if os.path.isdir(os.path.join(data, name))
                                 else round(os.path.getsize(os.path.join(data, name)) / 2**20)
                                 for name in sorted(os.listdir(data))},
        }
        print(json.dumps(verdict, indent=2), flush=True)
        if a.out:
            with open(a.out, "w") as f:
                json.dump({"args": vars(a), "samples": samples, "verdict": verdict}, f, indent=2)
        return 0 if verdict["verify_ok"] and result.get("failed_requests", 1) == 0 else 1
    finally:
        if bench and bench.poll() is None:
            bench.kill()
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
