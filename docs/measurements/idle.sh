#!/usr/bin/env bash
# One ingest run on a fresh data directory, with where the machine's time
# went (docs/performance.md, "Data subjects at scale"):
#
#   bash docs/measurements/idle.sh <binary> none|distinct <events>
#
# Prints the load, events/s, p99 (ms), the machine's idle and iowait shares
# while the bench ran, the server's peak RSS (KiB) and its CPU per event
# (user + system, µs), then the server's CPU ticks by thread name. CONC sets
# the bench's connections (default 8). SLOWSYNC_US=4000 runs the server with
# every fsync and fdatasync 4 ms slower (slowsync.c beside this script,
# built with gcc), as on a disk whose cache flush is slow.
set -euo pipefail
B=$1; L=$2; N=$3; D=/tmp/idle-$L; rm -rf $D
PRELOAD=
if [ -n "${SLOWSYNC_US:-}" ]; then
  gcc -shared -fPIC -O2 -o /tmp/slowsync.so "$(dirname "$0")/slowsync.c" -ldl
  PRELOAD=/tmp/slowsync.so
fi
LD_PRELOAD=$PRELOAD $B serve --data-dir $D --listen 127.0.0.1:7398 > /tmp/idle-$L.log 2>&1 & PID=$!
for i in $(seq 100); do curl -sf 127.0.0.1:7398/v1/info >/dev/null && break; sleep 0.1; done
TOKEN=$(cat $D/admin.token)
HZ=$(getconf CLK_TCK)
S0=($(head -1 /proc/stat)); T0=$(awk '{print $14+$15}' /proc/$PID/stat)
R=$($B bench --url http://127.0.0.1:7398 --token "$TOKEN" --events $N --batch 100 --concurrency ${CONC:-8} \
  --size 1024 --content prose --subjects $L --json)
HWM=$(awk '/^VmHWM/{print $2}' /proc/$PID/status); S1=($(head -1 /proc/stat)); T1=$(awk '{print $14+$15}' /proc/$PID/stat)
tot=0; for i in 1 2 3 4 5 6 7 8; do tot=$((tot + ${S1[$i]} - ${S0[$i]})); done
idle=$(( ${S1[4]} - ${S0[4]} )); iow=$(( ${S1[5]} - ${S0[5]} ))
echo "$L $(echo "$R" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(round(d["events_per_sec"]), round(d["p99_ms"],1))') idle=$((100*idle/tot))% iowait=$((100*iow/tot))% hwm_kib=$HWM ledger_us=$(echo "($T1-$T0)*1000000/$HZ/$N" | bc -l | cut -c1-5)"
for t in /proc/$PID/task/*; do echo "$(cat $t/comm) $(awk '{print $14+$15}' $t/stat)"; done \
  | awk '{a[$1]+=$2} END {for (k in a) if (a[k]>50) printf "%s=%d ", k, a[k]; print ""}'
kill $PID; wait $PID 2>/dev/null || true; rm -rf $D
