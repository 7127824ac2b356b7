# Shared by the ingest measurement scripts beside this file: start a server
# on a fresh data directory, and wait until its search index holds N events.
#
#   start_server <binary> <data dir> <log file> [serve flags]   # sets PID, TOKEN
#   wait_indexed <events>

start_server() {
  local bin=$1 dir=$2 log=$3
  shift 3
  rm -rf "$dir"
  "$bin" serve --data-dir "$dir" --listen 127.0.0.1:7399 "$@" >"$log" 2>&1 &
  PID=$!
  # Never leave a server on the port when a step below fails.
  trap 'kill "$PID" 2>/dev/null || true' EXIT
  for _ in $(seq 100); do curl -sf 127.0.0.1:7399/v1/info >/dev/null && break; sleep 0.1; done
  TOKEN=$(cat "$dir/admin.token")
}

wait_indexed() {
  local s
  for _ in $(seq 600); do
    s=$(curl -sf -H "Authorization: Bearer $TOKEN" 127.0.0.1:7399/metrics | awk '/^aiaudit_indexed_size /{print $2}')
    [ "${s%.*}" = "$1" ] && return 0
    sleep 0.5
  done
  echo "the search index did not reach $1 events in 300 s" >&2
  return 1
}
