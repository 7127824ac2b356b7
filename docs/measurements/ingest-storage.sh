#!/usr/bin/env bash
# One ingest run on a fresh data directory, then the storage it took
# (docs/performance.md, "Entry format 3"). Run from the checkout after
# `cargo build --release` (the load generator is this build's `aiaudit bench`):
#
#   bash docs/measurements/ingest-storage.sh <server binary> <label> <events> [serve flags]
#
# Prints the bench's JSON line, then the server's RSS and the bytes of each
# file once the search index has caught up and the server stopped cleanly.
set -euo pipefail
BIN=$1; LABEL=$2; N=$3; shift 3
D=/tmp/bench-$LABEL; rm -rf $D
$BIN serve --data-dir $D --listen 127.0.0.1:7399 "$@" >/tmp/serve-$LABEL.log 2>&1 &
PID=$!
for i in $(seq 100); do curl -sf 127.0.0.1:7399/v1/info >/dev/null && break; sleep 0.1; done
./target/release/aiaudit bench --url http://127.0.0.1:7399 --token "$(cat $D/admin.token)" --events $N --batch 100 --concurrency 8 --size ${SIZE:-1024} --content ${CONTENT:-prose} --json
# let the index catch up, then stop cleanly so every derived file is written
for i in $(seq 600); do
  s=$(curl -sf -H "Authorization: Bearer $(cat $D/admin.token)" 127.0.0.1:7399/metrics | awk '/^aiaudit_indexed_size /{print $2}')
  [ "${s%.*}" = "$N" ] && break; sleep 0.5; done
RSS=$(ps -o rss= -p $PID)
kill -TERM $PID; wait $PID || true
echo "{\"label\":\"$LABEL\",\"rss_kib\":$RSS,\"bytes\":{"
# total: apparent sizes (fjall's journals beside the keyring are sparse
# files of 64 MiB); allocated: the blocks the directory really takes.
( cd $D; for f in log/entries log/leaves log/levels ids.redb search.sqlite; do printf '"%s":%s,' $f $(stat -c %s $f); done; printf '"total":%s,"allocated":%s}}\n' $(du -sb . | cut -f1) $(du -s --block-size=1 . | cut -f1) )
