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
BIN=$1; N=$2
D=/tmp/bench-cpu; rm -rf $D
$BIN serve --data-dir $D --listen 127.0.0.1:7399 --access-log false >/tmp/serve-cpu.log 2>&1 &
PID=$!
for i in $(seq 100); do curl -sf 127.0.0.1:7399/v1/info >/dev/null && break; sleep 0.1; done
ticks() { awk '{print $14 + $15}' /proc/$PID/stat; }
T0=$(ticks)
R=$(./target/release/aiaudit bench --url http://127.0.0.1:7399 --token "$(cat $D/admin.token)" \
  --events $N --batch 100 --concurrency 8 --size ${SIZE:-1024} --content ${CONTENT:-prose} --json)
for i in $(seq 600); do
  s=$(curl -sf -H "Authorization: Bearer $(cat $D/admin.token)" 127.0.0.1:7399/metrics | awk '/^aiaudit_indexed_size /{print $2}')
  [ "${s%.*}" = "$N" ] && break; sleep 0.5; done
T1=$(ticks)
HZ=$(getconf CLK_TCK)
kill -TERM $PID; wait $PID || true
echo "$R" | python3 -c "import json, sys; d = json.load(sys.stdin); print('$BIN', round(d['events_per_sec']), 'events/s, p99', round(d['p99_ms'], 1), 'ms,', round(($T1 - $T0) * 1e6 / $HZ / $N, 2), 'us CPU per event')"
