#!/usr/bin/env bash
# Data key and master key rotation of a ledger whose keyring holds a key
# per data subject (docs/performance.md, "Data subjects at scale"): time
# and the ledger's peak RSS of each. Run from the checkout after
# `cargo build --release`:
#
#   bash docs/measurements/keyring-rotate.sh <events>
#
# Ingests <events> events, each naming a new subject, then runs `keys
# rotate` (a new key for every subject) and `keys rotate-master` (every
# record re-wrapped in place), resetting the ledger's VmHWM before each
# (/proc/<pid>/clear_refs) so its own peak shows. Prints one JSON line.
# BIN picks the binary (default the release build).
set -euo pipefail
N=$1
BIN=${BIN:-./target/release/aiaudit}
D=/tmp/keyring-rotate-data
rm -rf $D
$BIN serve --data-dir $D --listen 127.0.0.1:7397 >/tmp/keyring-rotate-serve.log 2>&1 &
PID=$!
for i in $(seq 100); do curl -sf 127.0.0.1:7397/v1/info >/dev/null && break; sleep 0.1; done
TOKEN=$(cat $D/admin.token)
$BIN bench --url http://127.0.0.1:7397 --token "$TOKEN" --events $N --batch 100 --concurrency 8 \
  --size 1024 --content prose --subjects distinct --json >/dev/null
HWM_INGEST=$(awk '/^VmHWM/{print $2}' /proc/$PID/status)
echo 5 > /proc/$PID/clear_refs
START=$(date +%s.%N)
$BIN keys rotate --url http://127.0.0.1:7397 --token "$TOKEN" >/dev/null
ROTATE_S=$(echo "$(date +%s.%N) - $START" | bc)
HWM_ROTATE=$(awk '/^VmHWM/{print $2}' /proc/$PID/status)
echo 5 > /proc/$PID/clear_refs
START=$(date +%s.%N)
$BIN keys rotate-master --url http://127.0.0.1:7397 --token "$TOKEN" >/dev/null
MASTER_S=$(echo "$(date +%s.%N) - $START" | bc)
HWM_MASTER=$(awk '/^VmHWM/{print $2}' /proc/$PID/status)
KEYS=$(curl -s 127.0.0.1:7397/v1/keys -H "Authorization: Bearer $TOKEN" | tr -d '\n')
READ=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' 127.0.0.1:7397/v1/events/1 -H "Authorization: Bearer $TOKEN")
kill -TERM $PID; wait $PID || true
KEYRING=$(stat -c %s $D/keyring)
rm -rf $D
echo "{\"events\":$N,\"keyring_bytes_after\":$KEYRING,\"ledger_vmhwm_ingest_kib\":$HWM_INGEST,\"rotate_s\":$ROTATE_S,\"ledger_vmhwm_rotate_kib\":$HWM_ROTATE,\"rotate_master_s\":$MASTER_S,\"ledger_vmhwm_rotate_master_kib\":$HWM_MASTER,\"read_an_event_after\":\"$READ\",\"keys\":$KEYS}"
