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
. "$(dirname "$0")/lib.sh"
BIN=$1; LABEL=$2; N=$3; shift 3
D=/tmp/bench-$LABEL
start_server "$BIN" "$D" "/tmp/serve-$LABEL.log" "$@"
./target/release/aiaudit bench --url http://127.0.0.1:7399 --token "$TOKEN" --events $N --batch 100 --concurrency 8 --size ${SIZE:-1024} --content ${CONTENT:-prose} --json
# let the index catch up, then stop cleanly so every derived file is written
wait_indexed $N
RSS=$(ps -o rss= -p $PID)
kill -TERM $PID; wait $PID || true
echo "{\"label\":\"$LABEL\",\"rss_kib\":$RSS,\"bytes\":{"
# total: apparent sizes (fjall's journals beside the keyring are sparse
# files of 64 MiB); allocated: the blocks the directory really takes.
( cd $D; for f in log/entries log/leaves log/levels ids.redb search.sqlite; do printf '"%s":%s,' $f $(stat -c %s $f); done; printf '"total":%s,"allocated":%s}}\n' $(du -sb . | cut -f1) $(du -s --block-size=1 . | cut -f1) )
