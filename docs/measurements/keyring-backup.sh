#!/usr/bin/env bash
# Backup and restore of a ledger whose keyring holds a key per data subject
# (docs/performance.md, "Data subjects at scale"): the ledger's and the
# CLI's peak RSS while the keyring is copied. Run from the checkout after
# `cargo build --release`:
#
#   bash docs/measurements/keyring-backup.sh <events>
#
# Ingests <events> events, each naming a new subject (so as many subject
# keys), reads the ledger's VmHWM, takes a full backup to a directory
# (`backup create`, which verifies it), reads the ledger's VmHWM again, then
# restores it (`restore`). Prints one JSON line; the CLI's peak RSS comes
# from GNU time. BIN picks the binary (default the release build).
set -euo pipefail
N=$1
BIN=${BIN:-./target/release/aiaudit}
D=/tmp/keyring-backup-data; B=/tmp/keyring-backup-to; R=/tmp/keyring-backup-restored
rm -rf $D $B $R
$BIN serve --data-dir $D --listen 127.0.0.1:7398 >/tmp/keyring-backup-serve.log 2>&1 &
PID=$!
for i in $(seq 100); do curl -sf 127.0.0.1:7398/v1/info >/dev/null && break; sleep 0.1; done
TOKEN=$(cat $D/admin.token)
$BIN bench --url http://127.0.0.1:7398 --token "$TOKEN" --events $N --batch 100 --concurrency 8 \
  --size 1024 --content prose --subjects distinct --json >/dev/null
HWM_INGEST=$(awk '/^VmHWM/{print $2}' /proc/$PID/status)
# VmHWM is a high-water mark: reset it so the backup's own peak shows.
echo 5 > /proc/$PID/clear_refs
START=$(date +%s.%N)
/usr/bin/time -f '%M' -o /tmp/keyring-backup-cli.rss $BIN backup create --url http://127.0.0.1:7398 --token "$TOKEN" --to $B --json >/dev/null
BACKUP_S=$(echo "$(date +%s.%N) - $START" | bc)
HWM_BACKUP=$(awk '/^VmHWM/{print $2}' /proc/$PID/status)
kill -TERM $PID; wait $PID || true
KEYRING=$(stat -c %s $D/keyring)
START=$(date +%s.%N)
/usr/bin/time -f '%M' -o /tmp/keyring-backup-restore.rss $BIN restore --from $B --data-dir $R --json >/dev/null
RESTORE_S=$(echo "$(date +%s.%N) - $START" | bc)
cmp $D/keyring $R/keyring
rm -rf $D $B $R
echo "{\"events\":$N,\"keyring_bytes\":$KEYRING,\"ledger_vmhwm_ingest_kib\":$HWM_INGEST,\"ledger_vmhwm_backup_kib\":$HWM_BACKUP,\"backup_s\":$BACKUP_S,\"backup_cli_maxrss_kib\":$(cat /tmp/keyring-backup-cli.rss),\"restore_s\":$RESTORE_S,\"restore_cli_maxrss_kib\":$(cat /tmp/keyring-backup-restore.rss)}"
