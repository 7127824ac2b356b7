#!/usr/bin/env bash
# Ingest and the ledger's CPU time per event for one load, on a fresh data
# directory (docs/performance.md, "Data subjects at scale"):
#
#   bash docs/measurements/cpu-per-event.sh <binary> <none|distinct> <events>
#
# Prints the load, events/s, p99 (ms) and the ledger's user + system CPU
# time per event in µs, read from /proc/<pid>/stat before and after the
# bench. Run builds one after another to compare them on the same machine.
set -euo pipefail
B=$1; L=$2; N=$3
D=/tmp/cpe-$L; rm -rf $D
$B serve --data-dir $D --listen 127.0.0.1:7398 > /tmp/cpe-$L.log 2>&1 & PID=$!
for i in $(seq 100); do curl -sf 127.0.0.1:7398/v1/info >/dev/null && break; sleep 0.1; done
TOKEN=$(cat $D/admin.token)
T0=$(awk '{print $14+$15}' /proc/$PID/stat)
R=$($B bench --url http://127.0.0.1:7398 --token "$TOKEN" --events $N --batch 100 --concurrency 8 \
  --size 1024 --content prose --subjects $L --json)
T1=$(awk '{print $14+$15}' /proc/$PID/stat)
HZ=$(getconf CLK_TCK)
RATE=$(echo "$R" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(round(d["events_per_sec"]), round(d["p99_ms"],1))')
echo "$L $RATE cpu_us_per_event=$(echo "($T1-$T0)*1000000/$HZ/$N" | bc -l | cut -c1-6)"
kill $PID; wait $PID 2>/dev/null || true
rm -rf $D
