#!/usr/bin/env bash
# Ingest of large events on a fresh data directory (docs/performance.md,
# "Large events"). Run from the checkout after `cargo build --release`
# (the load generator is this build's `aiaudit bench`):
#
#   bash docs/measurements/large-events.sh <server binary> <label> <events> <bytes per event> <connections> [serve flags]
#
# Prints the bench's JSON line, then the server's peak RSS (VmHWM) and the
# bytes the data directory took once the server stopped cleanly.
set -euo pipefail
BIN=$1; LABEL=$2; N=$3; SIZE=$4; C=$5; shift 5
D=/tmp/large-$LABEL; rm -rf $D
$BIN serve --data-dir $D --listen 127.0.0.1:7398 "$@" >/tmp/serve-$LABEL.log 2>&1 &
PID=$!
for i in $(seq 100); do curl -sf 127.0.0.1:7398/v1/info >/dev/null && break; sleep 0.1; done
./target/release/aiaudit bench --url http://127.0.0.1:7398 --token "$(cat $D/admin.token)" \
  --events $N --batch 1 --concurrency $C --size $SIZE --content prose --json
HWM=$(awk '/^VmHWM/{print $2}' /proc/$PID/status)
kill -TERM $PID; wait $PID || true
JSON=$((N * SIZE))
TOTAL=$(du -sb $D | cut -f1)
BLOBS=$(du -sb $D/blobs | cut -f1)
ENTRIES=$(stat -c %s $D/log/entries)
echo "{\"label\":\"$LABEL\",\"vmhwm_kib\":$HWM,\"event_json_bytes\":$JSON,\"total_bytes\":$TOTAL,\"blobs_bytes\":$BLOBS,\"entries_bytes\":$ENTRIES,\"per_json_byte\":$(echo "scale=3; $TOTAL / $JSON" | bc)}"
