#!/usr/bin/env bash
# One ingest run on a fresh data directory, and the CPU time per event it
# took (docs/performance.md, "Checking without writing" and "Writing while
# the disk syncs"): the server's user + system time from /proc/<pid>/stat
# before the run and once the search index has caught up (so the indexer's
# share is counted too), the load generator's (GNU time), and the whole
# machine's busy and idle time during the run (/proc/stat), and how long
# after the run the search index took to hold every event, and the
# server's peak RSS. Run from the
# checkout after `cargo build --release` (the load generator is this
# build's `aiaudit bench`):
#
#   bash docs/measurements/ingest-cpu.sh <server binary> <events>      # env: SIZE, CONTENT
#
# Prints one line: the binary, events/s, p99 per batch and CPU µs per event.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
BIN=$1; N=$2
[ -x /usr/bin/time ] || { echo "needs GNU time (apt-get install time)" >&2; exit 1; }
start_server "$BIN" /tmp/bench-cpu /tmp/serve-cpu.log --access-log false
ticks() { awk '{print $14 + $15}' /proc/"$PID"/stat; }
machine() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8, $5 + $6}' /proc/stat; }
T0=$(ticks); read -r BUSY0 IDLE0 < <(machine)
R=$(/usr/bin/time -f "%U %S" -o /tmp/bench-cpu.time ./target/release/aiaudit bench \
  --url http://127.0.0.1:7399 --token "$TOKEN" --events "$N" --batch 100 --concurrency 8 \
  --size "${SIZE:-1024}" --content "${CONTENT:-prose}" --json)
read -r BUSY1 IDLE1 < <(machine)
W0=$(date +%s.%N); wait_indexed "$N"; W1=$(date +%s.%N)
T1=$(ticks)
HZ=$(getconf CLK_TCK)
HWM=$(awk '/^VmHWM/{print $2}' /proc/"$PID"/status)
kill -TERM "$PID"; wait "$PID" || true
read -r CU CS < /tmp/bench-cpu.time
echo "$R" | python3 -c "
import json, sys
d = json.load(sys.stdin); n, hz = $N, $HZ
us = lambda ticks: round(ticks * 1e6 / hz / n, 2)
print('$BIN', round(d['events_per_sec']), 'events/s, p99', round(d['p99_ms'], 1), 'ms;',
      'CPU us per event: server', us($T1 - $T0), '(with the indexer catching up), load generator',
      round(($CU + $CS) * 1e6 / n, 2), '; the machine during the run: busy', us($BUSY1 - $BUSY0),
      'idle', us($IDLE1 - $IDLE0), '; index complete', round($W1 - $W0, 2), 's after the run; server VmHWM', $HWM // 1024, 'MiB')"
