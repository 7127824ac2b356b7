#!/usr/bin/env bash
# The dashboard's performance budget (docs/dashboard.md, "Performance
# budget"): a ledger under the example policy holding <events> AI events
# (aiaudit bench --content ai) and 300 that break a rule (violations and an
# incident), then tests/dashboard/budget.mjs in Debian's Chromium: the
# first load's bytes and time, and each page's time to interactive. Run from
# the checkout after `cargo build --release` and `npm ci --prefix tests/dashboard`:
#
#   bash docs/measurements/dashboard-budget.sh 1000000
#
# The data directory (about 1.3 GB for 1 M events) is removed at the end.
set -euo pipefail
N=${1:-1000000}
BIN=./target/release/aiaudit
D=/tmp/dashboard-budget; rm -rf $D
PORT=7398
$BIN serve --data-dir $D --listen 127.0.0.1:$PORT --policy-file deploy/policies/example.toml \
  >/tmp/serve-dashboard-budget.log 2>&1 &
PID=$!
trap 'kill -TERM $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf $D' EXIT
for i in $(seq 100); do curl -sf 127.0.0.1:$PORT/v1/info >/dev/null && break; sleep 0.1; done
TOKEN=$(cat $D/admin.token)
$BIN bench --url http://127.0.0.1:$PORT --token "$TOKEN" --events "$N" --batch 100 --concurrency 8 \
  --size 1024 --content ai --json
# 300 model calls to a provider the policy disallows: 300 high violations.
NOW=$(date -u +%Y-%m-%dT%H:%M:%SZ)
for b in 1 2 3; do
  python3 - "$NOW" "$b" <<'EOF' | curl -sf -XPOST 127.0.0.1:$PORT/v1/events -H "Authorization: Bearer $TOKEN" \
    -H 'content-type: application/json' --data-binary @- >/dev/null
import json, sys, uuid
now, b = sys.argv[1], int(sys.argv[2])
print(json.dumps([{"id": str(uuid.uuid4()), "time": now, "tenant": "bench", "source": {"name": "loan-assistant"},
  "actor": {"id": f"agent-{i % 7}", "type": "agent"}, "action": "model.invoke",
  "ai": {"gen_ai.provider.name": "deepseek", "gen_ai.request.model": "deepseek-chat"}} for i in range(100)]))
EOF
done
# Wait until every entry is indexed.
while :; do
  INFO=$(curl -sf 127.0.0.1:$PORT/v1/info)
  SIZE=$(echo "$INFO" | python3 -c 'import json,sys; i=json.load(sys.stdin); print(i["size"], i["index"]["indexed_size"])')
  set -- $SIZE
  [ "$1" -gt "$N" ] && [ "$1" = "$2" ] && break
  sleep 1
done
echo "log size $1, indexed $2"
# /v1/stats over the last hour: whole minutes (as the dashboard asks), then
# a start off the minute (every row counted).
for OFF in 0 7; do
  END=$(( ($(date +%s) / 60 + 1) * 60 ))
  FROM=$(date -u -d @$((END - 3600 + OFF)) +%Y-%m-%dT%H:%M:%SZ); TO=$(date -u -d @$END +%Y-%m-%dT%H:%M:%SZ)
  for i in 1 2 3; do
    curl -sf -o /dev/null -w "stats, start off the minute by ${OFF}s: %{time_total} s\n" \
      -H "Authorization: Bearer $TOKEN" "127.0.0.1:$PORT/v1/stats?from=$FROM&to=$TO&step=60"
  done
done
VKEY=$(cat $D/log.vkey)
DASH_URL=http://127.0.0.1:$PORT DASH_TOKEN=$TOKEN DASH_VKEY=$VKEY DASH_EVENT=$((N / 2)) \
  node tests/dashboard/budget.mjs
