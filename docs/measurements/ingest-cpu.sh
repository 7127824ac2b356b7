#!/usr/bin/env bash
# One ingest run on a fresh data directory, and the server's CPU time per
# event over it (docs/performance.md, "Checking without writing"): user +
# system time from /proc/<pid>/stat before the run and once the search index
# has caught up, so the indexer's share is counted too. Run from the
# checkout after `cargo build --release` (the load generator is this
# build's `aiaudit bench`):
#
#   bash docs/measurements/ingest-cpu.sh <server binary> <events>      # env: SIZE, CONTENT
#
# Prints one line: the binary, events/s, p99 per batch and CPU µs per event.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
BIN=$1; N=$2
start_server "$BIN" /tmp/bench-cpu /tmp/serve-cpu.log --access-log false
ticks() { awk '{print $14 + $15}' /proc/$PID/stat; }
T0=$(ticks)
R=$(./target/release/aiaudit bench --url http://127.0.0.1:7399 --token "$TOKEN" \
  --events $N --batch 100 --concurrency 8 --size ${SIZE:-1024} --content ${CONTENT:-prose} --json)
wait_indexed $N
T1=$(ticks)
HZ=$(getconf CLK_TCK)
kill -TERM $PID; wait $PID || true
echo "$R" | python3 -c "import json, sys; d = json.load(sys.stdin); print('$BIN', round(d['events_per_sec']), 'events/s, p99', round(d['p99_ms'], 1), 'ms,', round(($T1 - $T0) * 1e6 / $HZ / $N, 2), 'us CPU per event')"
