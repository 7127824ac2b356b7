#!/usr/bin/env bash
# Throughput and acknowledgement latency of N `aiaudit serve` nodes over one
# local PostgreSQL (docs/performance.md, docs/scaling.md).
#
#   deploy/bench/postgres.sh [NODES] [EVENTS] [CONCURRENCY_PER_NODE] [-- extra serve flags]
#
# NODES=0 runs one node on its embedded storage (the default, no PostgreSQL
# behind it) instead, for the embedded log's ratio to the same baselines.
#
# With BASELINE=SECONDS, also measures on the same cluster, after the nodes
# stop, what plain batched INSERTs reach, two ways, with as many clients as
# the nodes had (NODES × CONCURRENCY_PER_NODE, or CONCURRENCY_PER_NODE):
#  - the same events: `aiaudit bench --insert-into-postgres`, the very events
#    the nodes were sent (same generator, size, batches of 100), each batch
#    one multi-row INSERT into a table of a UUID primary key and a jsonb
#    event, committed durably as the nodes' are;
#  - rows built by the server: pgbench for BASELINE seconds, each
#    transaction one INSERT … SELECT of 100 generated ~1 KiB jsonb rows (no
#    events carried over the network).
#
# Each run also prints where the two cores went, as CPU time per event
# (until the search index caught up): the whole machine's (/proc/stat),
# the nodes', the load generator's, and the rest (PostgreSQL, and the
# kernel's work not charged to a process). With PGSTATS=1, PostgreSQL's
# execution time per event of each statement the nodes sent
# (pg_stat_statements).
#
# Needs Debian's postgresql and time packages and a release build (cargo
# build --release; AIAUDIT_BIN=<binary> runs another build's nodes).
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
BIN=${AIAUDIT_BIN:-$ROOT/target/release/aiaudit}
command -v /usr/bin/time >/dev/null || { echo "needs GNU time (Debian: apt-get install time)" >&2; exit 1; }
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
[ -n "${PGSTATS:-}" ] && echo "shared_preload_libraries = 'pg_stat_statements'" >>"$WORK/pg/postgresql.conf"
as_pg "$PGBIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pg.log" -w start >/dev/null
[ -n "${PGSTATS:-}" ] && as_pg "$PGBIN/psql" -q -h 127.0.0.1 -p "$PGPORT" -U postgres -c "CREATE EXTENSION pg_stat_statements"

urls=()
STORAGE=(--storage "$URL")
CLIENTS=$((PER_NODE * NODES))
if [ "$NODES" = 0 ]; then NODES=1; STORAGE=(); CLIENTS=$PER_NODE; fi
for i in $(seq 0 $((NODES - 1))); do
  dir="$WORK/node$i"
  mkdir -p "$dir"
  if [ "$i" -gt 0 ]; then
    for f in log.key log.vkey admin.token master.key; do
      [ -f "$WORK/node0/$f" ] && cp -p "$WORK/node0/$f" "$dir/"
    done
  fi
  port=$((7391 + i))
  AIAUDIT_LOG=warn "$BIN" serve --data-dir "$dir" --listen "127.0.0.1:$port" "${STORAGE[@]}" \
    --rate-limit-events-per-sec 0 "${EXTRA[@]}" 2>>"$WORK/node$i.log" &
  PIDS+=($!)
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
  urls+=(--url "http://127.0.0.1:$port")
done
TOKEN=$(cat "$WORK/node0/admin.token")

HZ=$(getconf CLK_TCK)
# Clock ticks of these processes (user + system).
ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done; echo $t; }
# Every CPU's busy ticks (user, nice, system, irq, softirq): the whole
# machine's, since nothing else runs; PostgreSQL's share is the rest once
# the nodes' and the load generator's are taken away.
all_ticks() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
us_per_event() { python3 -c "print(round($1 * 1e6 / $HZ / $EVENTS, 1))"; }
# The load generator's user + system seconds, from /usr/bin/time's last line.
client_us() { python3 -c "import sys; u, s = sys.stdin.read().split()[-2:]; print(round((float(u) + float(s)) * 1e6 / $EVENTS, 1))" <"$1"; }

NODES_T0=$(ticks "${PIDS[@]}"); ALL_T0=$(all_ticks)
/usr/bin/time -f "%U %S" -o "$WORK/client.time" "$BIN" bench --token "$TOKEN" "${urls[@]}" --events "$EVENTS" --batch 100 \
  --concurrency "$CLIENTS" --size 1024

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
NODES_T1=$(ticks "${PIDS[@]}"); ALL_T1=$(all_ticks)
NODES_US=$(us_per_event $((NODES_T1 - NODES_T0)))
ALL_US=$(us_per_event $((ALL_T1 - ALL_T0)))
CLIENT_US=$(client_us "$WORK/client.time")
# With PGSTATS=1: where PostgreSQL's time went, statement by statement.
if [ -n "${PGSTATS:-}" ]; then
  as_pg "$PGBIN/psql" -h 127.0.0.1 -p "$PGPORT" -U postgres -c \
    "SELECT round(total_exec_time::numeric / $EVENTS * 1000, 1) AS us_per_event, calls, rows,
            left(regexp_replace(query, '\s+', ' ', 'g'), 90) AS statement
     FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 12"
fi
echo "CPU per event: all $ALL_US µs: nodes $NODES_US, load generator $CLIENT_US, PostgreSQL and the kernel's rest $(python3 -c "print(round($ALL_US - $NODES_US - $CLIENT_US, 1))")"

if [ -n "${BASELINE:-}" ]; then
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait "${PIDS[@]}" 2>/dev/null || true
  PIDS=()
  # What the nodes' run left to PostgreSQL (vacuum, a checkpoint) done
  # before the baseline starts, not during it.
  as_pg "$PGBIN/psql" -q -h 127.0.0.1 -p "$PGPORT" -U postgres -c "VACUUM ANALYZE" -c "CHECKPOINT"
  echo -n "baseline: the same events, $CLIENTS clients: "
  ALL_T0=$(all_ticks)
  /usr/bin/time -f "%U %S" -o "$WORK/client.time" "$BIN" bench --insert-into-postgres "$URL" --events "$EVENTS" --batch 100 \
    --concurrency "$CLIENTS" --size 1024
  ALL_US=$(us_per_event $(( $(all_ticks) - ALL_T0 )))
  CLIENT_US=$(client_us "$WORK/client.time")
  echo "CPU per event: all $ALL_US µs: load generator $CLIENT_US, PostgreSQL and the kernel's rest $(python3 -c "print(round($ALL_US - $CLIENT_US, 1))")"
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
  as_pg "$PGBIN/psql" -q -h 127.0.0.1 -p "$PGPORT" -U postgres -c "VACUUM ANALYZE" -c "CHECKPOINT"
  tps=$(as_pg "$PGBIN/pgbench" -n -h 127.0.0.1 -p "$PGPORT" -U postgres -c "$CLIENTS" -j 2 \
    -T "$BASELINE" -f "$WORK/insert.sql" postgres | sed -n 's/^tps = \([0-9.]*\).*/\1/p')
  echo "baseline: rows built by the server (pgbench), $CLIENTS clients: $(python3 -c "print(round($tps * 100))") events/s"
fi
