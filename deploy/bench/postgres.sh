#!/usr/bin/env bash
# Throughput and acknowledgement latency of N `aiaudit serve` nodes over one
# local PostgreSQL (docs/performance.md, docs/scaling.md).
#
#   deploy/bench/postgres.sh [NODES] [EVENTS] [CONCURRENCY_PER_NODE] [-- extra serve flags]
#
# With BASELINE=SECONDS, also measures on the same cluster, after the nodes
# stop, what plain batched INSERTs reach: pgbench, NODES × CONCURRENCY_PER_NODE
# clients, each transaction one INSERT of 100 rows (a UUID primary key and a
# ~1 KiB jsonb event built by the server), committed durably as the nodes' are.
#
# Needs Debian's postgresql package and a release build (cargo build --release).
# Starts a throwaway PostgreSQL cluster in a temporary directory (as the
# postgres user when run as root), the nodes on 127.0.0.1:7391.., then runs
# `aiaudit bench` spread over every node, and removes everything.
set -euo pipefail
NODES=${1:-3}
EVENTS=${2:-300000}
PER_NODE=${3:-4}
shift $(( $# < 3 ? $# : 3 ))
[ "${1:-}" = "--" ] && shift
EXTRA=("$@")

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN="$ROOT/target/release/aiaudit"
PGBIN=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -1)
WORK=$(mktemp -d)
PGPORT=${PGPORT:-55432}
URL="postgres://postgres@127.0.0.1:$PGPORT/postgres"
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  as_pg "$PGBIN/pg_ctl" -D "$WORK/pg" -m immediate stop >/dev/null 2>&1 || true
  [ -n "${KEEP_PGLOG:-}" ] && cp "$WORK/pg.log" "$KEEP_PGLOG"
  rm -rf "$WORK"
}
trap cleanup EXIT

[ "$(id -u)" = 0 ] && chown postgres "$WORK"
as_pg "$PGBIN/initdb" -D "$WORK/pg" -U postgres --auth=trust -E UTF8 --no-sync >/dev/null
cat >>"$WORK/pg/postgresql.conf" <<EOF
port = $PGPORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$WORK/pg'
max_connections = 200
${PGEXTRA:-}
EOF
as_pg "$PGBIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pg.log" -w start >/dev/null

urls=()
for i in $(seq 0 $((NODES - 1))); do
  dir="$WORK/node$i"
  mkdir -p "$dir"
  if [ "$i" -gt 0 ]; then
    for f in log.key log.vkey admin.token master.key; do
      [ -f "$WORK/node0/$f" ] && cp -p "$WORK/node0/$f" "$dir/"
    done
  fi
  port=$((7391 + i))
  AIAUDIT_LOG=warn "$BIN" serve --data-dir "$dir" --listen "127.0.0.1:$port" --storage "$URL" \
    --rate-limit-events-per-sec 0 "${EXTRA[@]}" 2>>"$WORK/node$i.log" &
  PIDS+=($!)
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
  urls+=(--url "http://127.0.0.1:$port")
done
TOKEN=$(cat "$WORK/node0/admin.token")
"$BIN" bench --token "$TOKEN" "${urls[@]}" --events "$EVENTS" --batch 100 \
  --concurrency $((PER_NODE * NODES)) --size 1024

# How long the search index (in the same database, written by the
# publishing node) takes to catch up with what was acknowledged.
start=$(date +%s%N)
while :; do
  lag=$(curl -sf -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:7391/v1/info" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["index"]["lag_events"])' 2>/dev/null || echo "?")
  [ "$lag" = "0" ] && break
  if [ $(( ($(date +%s%N) - start) / 1000000000 )) -ge 600 ]; then echo "index still $lag behind after 600 s"; break; fi
  sleep 0.5
done
echo "search index caught up $(( ($(date +%s%N) - start) / 1000000 )) ms after the last acknowledgement"

if [ -n "${BASELINE:-}" ]; then
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait "${PIDS[@]}" 2>/dev/null || true
  PIDS=()
  as_pg "$PGBIN/psql" -q -h 127.0.0.1 -p "$PGPORT" -U postgres -c \
    "CREATE TABLE baseline_events (id uuid PRIMARY KEY, body jsonb NOT NULL)"
  cat >"$WORK/insert.sql" <<'SQL'
INSERT INTO baseline_events (id, body)
SELECT gen_random_uuid(), jsonb_build_object(
  'id', gen_random_uuid()::text, 'time', now()::text, 'tenant', 'bench',
  'source', jsonb_build_object('name', 'pgbench'), 'action', 'model.invoke',
  'actor', jsonb_build_object('id', 'bench', 'type', 'agent'),
  'attributes', jsonb_build_object('pad', repeat(md5(random()::text), 27)))
FROM generate_series(1, 100);
SQL
  [ "$(id -u)" = 0 ] && chmod a+r "$WORK/insert.sql"
  tps=$(as_pg "$PGBIN/pgbench" -n -h 127.0.0.1 -p "$PGPORT" -U postgres -c $((PER_NODE * NODES)) -j 2 \
    -T "$BASELINE" -f "$WORK/insert.sql" postgres | sed -n 's/^tps = \([0-9.]*\).*/\1/p')
  echo "baseline: plain batched INSERTs, $((PER_NODE * NODES)) clients: $(python3 -c "print(round($tps * 100))") events/s"
fi
