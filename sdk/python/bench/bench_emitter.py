"""Measures the Python emitter: the cost of `emit` per call, and the rate at
which a spool drains into a real ledger (docs/performance.md, "Python emitter").

    python3 sdk/python/bench/bench_emitter.py --bin target/release/aiaudit --events 200000

Events are ~1.1 KiB AI events (prompt and answer text from a fixed corpus,
varied ids, actors, models and token counts), built before timing starts.
The ledger runs with its defaults (sealing and the search index on).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Dict, List

from aiaudit import Emitter

PROMPTS = [
    "Summarise the applicant's income statements for the last six months and flag irregular deposits.",
    "Translate the customer's complaint from Yoruba to English and classify its urgency.",
    "Does this loan application meet policy L-4 for small businesses in Lagos State?",
    "Draft a reply explaining why the transfer to the new beneficiary was held for review.",
    "List the documents still missing from the KYC file and say which can be collected by phone.",
]
ANSWERS = [
    "Income is steady at about 410,000 NGN a month; two cash deposits in March exceed the usual pattern.",
    "The customer says the card was debited twice at the pharmacy; urgency is high because rent is due.",
    "Yes: trading history over 24 months, no arrears, and the requested limit is within 3x monthly turnover.",
    "We held the transfer because the beneficiary was added less than 24 hours ago; it will be released today.",
    "Missing: proof of address and a utility bill. Both can be confirmed by a call to the registered number.",
]
MODELS = ["gpt-4o-mini", "claude-x", "llama-3.1-70b", "mistral-large"]


def make_events(n: int, seed: int = 7) -> List[Dict[str, Any]]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        p, a = rnd.randrange(len(PROMPTS)), rnd.randrange(len(ANSWERS))
        out.append({
            "id": f"bench-{seed}-{i:09d}", "time": f"2026-12-03T07:{i // 60000 % 60:02d}:{i // 1000 % 60:02d}.{i % 1000:03d}Z",
            "tenant": "acme", "source": {"name": "loan-assistant", "version": "3.2.0"},
            "actor": {"id": f"agent-{rnd.randrange(500)}", "type": "agent"}, "action": "model.invoke",
            "outcome": {"status": "success"},
            "ai": {"gen_ai.provider.name": "openai", "gen_ai.request.model": rnd.choice(MODELS),
                   "gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": rnd.randrange(50, 4000),
                   "gen_ai.usage.output_tokens": rnd.randrange(10, 800)},
            "input": {"content": PROMPTS[p] + " " + PROMPTS[(p + i) % len(PROMPTS)]},
            "output": {"content": ANSWERS[a] + " " + ANSWERS[(a + i) % len(ANSWERS)]},
            "attributes": {"branch": rnd.choice(["Ikeja", "Yaba", "Kano", "Abuja", "Nairobi"]), "request": i},
        })
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"no ledger at {url}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/aiaudit")
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--dir", default=None, help="work directory (default: a new temporary one)")
    args = ap.parse_args()
    work = Path(args.dir or tempfile.mkdtemp(prefix="aiaudit-pybench-"))
    spool = work / "spool"
    n = args.events
    events = make_events(n)
    json_bytes = sum(len(json.dumps(e, separators=(",", ":"))) for e in events)
    print(f"events: {n}, mean JSON size {json_bytes / n:.0f} B")

    # 1. emit: the caller's cost, three times (fresh spools), with json.dumps
    # of the same events as a yardstick measured in the same run (this
    # machine's speed varies from minute to minute).
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    for e in events:
        json.dumps(e)
    t_dumps = time.perf_counter() - t0
    runs = []
    for r in range(3):
        d = spool if r == 2 else work / f"spool-warmup-{r}"
        em = Emitter(url=url, token="unused", spool_dir=d, queue_capacity=n + 1, max_backoff=60.0)
        t0 = time.perf_counter()
        for e in events:
            em.emit(e)
        t_emit = time.perf_counter() - t0
        em.sync()
        t_spooled = time.perf_counter() - t0
        em.close(timeout=0)
        runs.append((t_emit, t_spooled))
        if d != spool:
            shutil.rmtree(d)
    for t_emit, t_spooled in runs:
        print(f"emit: {t_emit / n * 1e6:.2f} us per call ({n / t_emit:,.0f} calls/s from one thread); "
              f"emitted and fsync'd in the spool: {n / t_spooled:,.0f} events/s")
    print(f"yardstick, json.dumps of the same events: {t_dumps / n * 1e6:.2f} us per event")
    spool_bytes = sum(f.stat().st_size for f in spool.iterdir() if f.name.startswith("seg-"))
    print(f"spool on disk: {spool_bytes / n:.0f} B per event")

    # 2. spool -> ledger, the ledger on its defaults.
    data = work / "ledger"
    ledger = subprocess.Popen([args.bin, "serve", "--data-dir", str(data), "--listen", f"127.0.0.1:{port}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env=dict(os.environ, AIAUDIT_LOG="warn"))
    try:
        wait_healthy(url)
        admin = (data / "admin.token").read_text().strip()
        t0 = time.perf_counter()
        with Emitter(url=url, token=admin, spool_dir=spool) as em:
            if not em.flush(timeout=600):
                raise SystemExit(f"not delivered: {em.stats()}")
            t_drain = time.perf_counter() - t0
            stats = em.stats()
        print(f"spool -> ledger: {n / t_drain:,.0f} events/s ({t_drain:.1f} s; retries {stats.retries}, "
              f"duplicates {stats.duplicates})")

        # Baseline in the same run: the ledger's own load generator on the same ledger.
        bench = subprocess.run([args.bin, "bench", "--url", url, "--token", admin, "--events", str(n),
                                "--batch", "500", "--concurrency", "4", "--size", "1024"],
                               capture_output=True, text=True)
        print("baseline, aiaudit bench --batch 500 --concurrency 4 --size 1024:")
        print("  " + (bench.stdout.strip() or bench.stderr.strip()).replace("\n", "\n  "))
    finally:
        ledger.terminate()
        ledger.wait()
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
