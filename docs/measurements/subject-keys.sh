#!/usr/bin/env bash
# Ingest where every event names a new data subject, against the same load
# without subjects, on fresh data directories (docs/performance.md, "Data
# subjects at scale"). Run from the checkout after `cargo build --release`:
#
#   bash docs/measurements/subject-keys.sh <events> [serve flags]
#
# For each of `none` and `distinct`: the bench's JSON line, then the
# server's peak RSS (VmHWM, sampled every second while it ran and read at
# the end), the keyring's bytes per key, the time to open a subject's key
# for a read (GET of the first event, whose key has left the cache) and to
# erase a subject, and the restart time. Each data directory is removed
# once measured (10 M events need about 11 GB of disk). LOADS picks the
# loads (default "none distinct"), BIN the binary (default the release build).
set -euo pipefail
N=$1; shift
BIN=${BIN:-./target/release/aiaudit}
for SUBJECTS in ${LOADS:-none distinct}; do
  D=/tmp/subjects-$SUBJECTS; rm -rf $D
  $BIN serve --data-dir $D --listen 127.0.0.1:7399 "$@" >/tmp/serve-subjects-$SUBJECTS.log 2>&1 &
  PID=$!
  for i in $(seq 100); do curl -sf 127.0.0.1:7399/v1/info >/dev/null && break; sleep 0.1; done
  TOKEN=$(cat $D/admin.token)
  # The first event names a subject we can erase later.
  curl -sf -XPOST 127.0.0.1:7399/v1/events -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
    -d '[{"id":"0192f3a4-6b1c-7d2e-9f00-1a2b3c4d5e6f","time":"2026-12-02T09:14:03Z","tenant":"bench","source":{"name":"aiaudit-bench"},"actor":{"id":"a","type":"agent"},"action":"agent.decision","subject":"first-subject","attributes":{"note":"x"}}]' >/dev/null
  $BIN bench --url http://127.0.0.1:7399 --token "$TOKEN" --events $N --batch 100 --concurrency 8 \
    --size 1024 --content prose --subjects $SUBJECTS --json
  HWM=$(awk '/^VmHWM/{print $2}' /proc/$PID/status)
  RSS=$(awk '/^VmRSS/{print $2}' /proc/$PID/status)
  READ=$(curl -s -o /dev/null -w '%{time_total}' 127.0.0.1:7399/v1/events/0 -H "Authorization: Bearer $TOKEN")
  ERASE=$(curl -s -o /dev/null -w '%{time_total}' -XPOST 127.0.0.1:7399/v1/erase -H "Authorization: Bearer $TOKEN" \
    -H 'content-type: application/json' -d '{"tenant":"bench","subject":"first-subject"}')
  KEYS=$(curl -s 127.0.0.1:7399/v1/keys -H "Authorization: Bearer $TOKEN" | tr -d '\n')
  kill -TERM $PID; wait $PID || true
  # On PostgreSQL (--storage) the keyring is a table: no local file.
  KEYRING=$(stat -c %s $D/keyring 2>/dev/null || echo 0)
  # Allocated bytes: the tree's journal file is 64 MiB long but sparse (unused).
  INDEX=$(du -sB1 $D/keyring.index 2>/dev/null | cut -f1 || echo 0)
  # Subject key families' members (derived from the log; see docs/format.md).
  MEMBERS=$(du -sB1 $D/keyring.members 2>/dev/null | cut -f1 || echo 0)
  START=$(date +%s.%N)
  $BIN serve --data-dir $D --listen 127.0.0.1:7399 "$@" >/tmp/serve-subjects-$SUBJECTS-2.log 2>&1 &
  PID=$!
  for i in $(seq 600); do curl -sf 127.0.0.1:7399/readyz >/dev/null && break; sleep 0.05; done
  READY=$(echo "$(date +%s.%N) - $START" | bc)
  HWM2=$(awk '/^VmHWM/{print $2}' /proc/$PID/status)
  kill -TERM $PID; wait $PID || true
  rm -rf $D
  echo "{\"subjects\":\"$SUBJECTS\",\"vmhwm_kib\":$HWM,\"vmrss_end_kib\":$RSS,\"read_first_s\":$READ,\"erase_s\":$ERASE,\"keyring_bytes\":$KEYRING,\"keyring_index_bytes\":$INDEX,\"keyring_members_bytes\":$MEMBERS,\"restart_ready_s\":$READY,\"restart_vmhwm_kib\":$HWM2,\"keys\":$KEYS}"
done
