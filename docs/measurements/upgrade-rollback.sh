#!/usr/bin/env bash
# Rehearses a gated upgrade of the entry format on one machine (3 in
# session 8, 5 in session 29), with a rollback before finalizing
# (docs/operations.md, "Entry format 3: a gated upgrade" and after). Needs
# the previous build and this one:
#
#   bash docs/measurements/upgrade-rollback.sh <previous aiaudit> <new aiaudit>
#
# Exits non-zero at the first step that does not behave as documented.
set -euo pipefail
PREV=${1:?usage: upgrade-rollback.sh <previous aiaudit> <new aiaudit>}
NEW=${2:?usage: upgrade-rollback.sh <previous aiaudit> <new aiaudit>}
WORK=$(mktemp -d)
D=$WORK/data
PORT=${PORT:-7419}
URL=http://127.0.0.1:$PORT
PID=
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$WORK"' EXIT

serve() { # serve <binary> <label>
  # No access log: its trail.access records would take log indexes the
  # rehearsal counts on (both builds know the flag).
  "$1" serve --data-dir "$D" --listen "127.0.0.1:$PORT" --access-log false >"$WORK/$2.log" 2>&1 &
  PID=$!
  for _ in $(seq 100); do
    curl -sf "$URL/v1/info" >/dev/null && return 0
    kill -0 "$PID" 2>/dev/null || { PID=; return 1; }
    sleep 0.1
  done
  return 1
}
size() { curl -sf "$URL/v1/info" | python3 -c 'import json,sys; print(json.load(sys.stdin)["size"])'; }
resend() { # resend <first> <count> <size>: events already logged come back as duplicates
  post "$1" "$2"
  [ "$(size)" = "$3" ] || { echo "re-sent events were logged again: size $(size), want $3"; return 1; }
  echo "re-sent e$1..e$(($1 + $2 - 1)): duplicates, size still $3"
}
stop() { kill -TERM "$PID"; wait "$PID" || true; PID=; }
token() { cat "$D/admin.token"; }
post() { # post <first> <count>: events e<first>.. with sealed content
  local body="[" sep=""
  for i in $(seq "$1" $(($1 + $2 - 1))); do
    body+="$sep{\"id\":\"e$i\",\"time\":\"2026-12-02T08:00:00Z\",\"tenant\":\"acme\",\"source\":{\"name\":\"rehearsal\"},\"actor\":{\"id\":\"agent-1\",\"type\":\"agent\"},\"action\":\"model.invoke\",\"subject\":\"customer-$i\",\"input\":{\"content\":\"prompt $i\"}}"
    sep=","
  done
  curl -sf -H "Authorization: Bearer $(token)" -H 'Content-Type: application/json' \
    --data "$body]" "$URL/v1/events" >/dev/null
}
wait_size() {
  for _ in $(seq 100); do
    [ "$(curl -sf "$URL/v1/info" | python3 -c 'import json,sys; print(json.load(sys.stdin)["size"])')" -ge "$1" ] && return 0
    sleep 0.1
  done
  return 1
}
versions() { # the entry version of each event 0..n-1, and that its content opens
  local out=""
  for i in $(seq 0 $(($1 - 1))); do
    out+=$(curl -s -H "Authorization: Bearer $(token)" "$URL/v1/events/$i" | python3 -c '
import json, sys
e = json.load(sys.stdin)
if "entry_version" not in e:
    print(" ?(%s)" % e.get("detail", e), end="")
else:
    ok = e.get("event", {}).get("input", {}).get("content", "").startswith("prompt")
    print(" v%s%s" % (e["entry_version"], "" if ok else "(content not readable)"), end="")')
  done
  echo "$out"
}
step() { echo; echo "== $*"; }

step "1. previous build: a new log, 3 events"
serve "$PREV" prev1 || { cat "$WORK/prev1.log"; exit 1; }
post 0 3; wait_size 3; echo "entries:$(versions 3)"; stop

step "2. new build on the same data directory (blue-green: green starts)"
serve "$NEW" new1 || { cat "$WORK/new1.log"; exit 1; }
plain() { sed 's/\x1b\[[0-9;]*m//g' "$WORK/$1.log"; }
plain new1 | grep -o 'sealed entry format entry_format=[0-9]'
"$NEW" upgrade status --data-dir "$D"
post 3 3; wait_size 6; echo "entries:$(versions 6)"; resend 0 3 6; stop

step "3. roll back: the previous build serves the log again, reads all, appends"
serve "$PREV" prev2 || { cat "$WORK/prev2.log"; exit 1; }
echo "entries:$(versions 6)"; resend 3 3 6; post 6 3; wait_size 9; echo "entries:$(versions 9)"; stop
echo "previous build's verify:"; "$PREV" verify --data-dir "$D" | tail -1

step "4. finalize with the new build, restart it"
"$NEW" upgrade finalize --data-dir "$D"
"$NEW" upgrade status --data-dir "$D"
serve "$NEW" new2 || { cat "$WORK/new2.log"; exit 1; }
plain new2 | grep -o 'sealed entry format entry_format=[0-9]'
post 9 3; wait_size 12; echo "entries:$(versions 12)"; resend 6 6 12; stop
echo "new build's verify:"; "$NEW" verify --data-dir "$D" | tail -1

step "5. after finalizing, the previous build can no longer serve the log (expected)"
if serve "$PREV" prev3; then
  echo "entries:$(versions 12)"; stop
else
  echo "the previous build refuses to start:"
  sed 's/\x1b\[[0-9;]*m//g' "$WORK/prev3.log" | grep -E 'error|upgrading' | sed 's#/tmp/[^ ]*/data#<data-dir>#'
fi

step "6. the new build serves the log again after that attempt"
serve "$NEW" new3 || { cat "$WORK/new3.log"; exit 1; }
echo "entries:$(versions 12)"; resend 0 12 12; stop
echo; echo "rehearsal complete"
