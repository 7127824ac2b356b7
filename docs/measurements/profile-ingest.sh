#!/usr/bin/env bash
# Where the ledger's CPU goes during ingest (docs/performance.md, "Issue #16:
# where each target stands"): a fresh data directory with the defaults, 200 k
# events of warm-up, then `perf record` of the ledger alone (149 Hz, DWARF
# call graphs) over N more events of the same load as the ingest scripts
# (1 KiB, batches of 100, 8 connections). Needs perf (Debian:
# linux-perf) and a release build, run from the checkout:
#
#   bash docs/measurements/profile-ingest.sh <server binary> <events> [out dir]   # env: CONTENT
#
# Leaves <out dir>/perf.data and <out dir>/stacks.txt (`perf script`, one
# sample per blank-line-separated block, frames innermost first) and prints
# the share of samples whose stack holds each of the parts the closing
# status names.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
BIN=$1; N=$2; OUT=${3:-/tmp/profile-ingest}
command -v perf >/dev/null || { echo "needs perf (apt-get install linux-perf)" >&2; exit 1; }
mkdir -p "$OUT"
start_server "$BIN" /tmp/bench-prof /tmp/serve-prof.log --access-log false
load() {
  ./target/release/aiaudit bench --url http://127.0.0.1:7399 --token "$TOKEN" --events "$1" \
    --batch 100 --concurrency 8 --size 1024 --content "${CONTENT:-prose}" --json
}
load 200000 >/dev/null
perf record -F 149 --call-graph dwarf,32768 -o "$OUT/perf.data" -p "$PID" >"$OUT/record.log" 2>&1 &
REC=$!
load "$N"
kill -INT "$REC"; wait "$REC" || true
kill -TERM "$PID"; wait "$PID" || true
perf script -i "$OUT/perf.data" >"$OUT/stacks.txt" 2>/dev/null
python3 - "$OUT/stacks.txt" <<'PY'
import sys
parts = [
    ("sealing", "sealed_v3::seal"), ("of which zstd", "ZSTD_"),
    ("of which XChaCha20-Poly1305", "chacha"), ("SHA-256", "sha256"),
    ("search index", "search::"), ("sequencer", "sequencer"),
    ("pwrite", "pwrite"), ("fdatasync", "fdatasync"),
    ("id index (integrate)", "integrate"), ("parsing (bounded::events)", "bounded::events"),
    ("checks (check_batch)", "check_batch"), ("mimalloc", "mi_"),
]
samples, cur = [], []
for line in open(sys.argv[1], errors="replace"):
    if line.strip():
        cur.append(line)
    elif cur:
        samples.append("".join(cur)); cur = []
if cur:
    samples.append("".join(cur))
print(len(samples), "samples")
for name, pattern in parts:
    share = sum(pattern in s for s in samples) / max(len(samples), 1)
    print(f"{100 * share:5.1f} %  {name}")
PY
