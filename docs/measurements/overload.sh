#!/usr/bin/env bash
# Overload measurement (docs/performance.md, "Overload"): the ledger with its
# defaults against 8 and 4,096 connections posting 100-event batches of
# 1 KiB events, and (for comparison, in the same run) without a budget.
# Prints one line per scenario: the bench's JSON plus the server's peak RSS.
#
#   cargo build --release && bash docs/measurements/overload.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=target/release/aiaudit
secs="${1:-60}"
port=7391

scenario() {
  local name="$1" connections="$2" server_args="$3" bench_args="$4"
  local dir
  dir=$(mktemp -d /var/tmp/aiaudit-overload.XXXXXX)
  # shellcheck disable=SC2086
  "$bin" serve --data-dir "$dir/data" --listen "127.0.0.1:$port" $server_args 2>"$dir/server.log" &
  local pid=$!
  until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do sleep 0.1; done
  local token
  token=$(cat "$dir/data/admin.token")
  local out
  # shellcheck disable=SC2086
  out=$("$bin" bench --url "http://127.0.0.1:$port" --token "$token" --batch 100 --size 1024 \
        --concurrency "$connections" --duration "$secs" --json $bench_args || true)
  local peak
  peak=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  kill -TERM "$pid"; wait "$pid" || true
  echo "$name: $out peak_rss_kib=$peak"
  rm -rf "$dir"
}

scenario "defaults, 8 connections" 8 "" ""
scenario "defaults, 4096 connections, Retry-After honoured, latency after 15 s" 4096 "" "--warmup 15"
scenario "defaults, 4096 connections, Retry-After honoured, latency of the whole run" 4096 "" ""
scenario "defaults, 4096 connections, Retry-After ignored, latency after 15 s" 4096 "" "--ignore-retry-after --warmup 15"
scenario "no budget (--max-inflight-bytes 1e12), 1024 connections" 1024 "--max-inflight-bytes 1000000000000 --credential-inflight-share 1" ""
