#!/usr/bin/env bash
# Blue-green deployment of the multi-node ledger (deploy/kubernetes/postgres/).
#
#   blue-green.sh deploy IMAGE   deploy IMAGE to the idle slot, validate it,
#                                switch the Service to it, validate again;
#                                any failure switches back (or never switches)
#   blue-green.sh rollback       switch the Service back to the other slot
#   blue-green.sh finish         after the soak: scale the old slot to zero
#   blue-green.sh status         which slot serves, and what each runs
#
# Both slots run over the same PostgreSQL log. The new build must not write
# an entry format the old one cannot read until the upgrade is finalized
# (`aiaudit upgrade finalize`, docs/operations.md): the ledger's format gate
# sees to that, and each validation below reports the format written.
#
# Validation is `aiaudit validate` (the seed's pre- and post-deployment
# checks): health and readiness, the checkpoint signed by the log's key and
# consistent with the last one seen before the deployment (integrity), a
# read-only performance smoke test, the security probes (anonymous writes,
# token listing and searches refused) and the compliance settings.
#
# Environment:
#   AIAUDIT_TOKEN         admin token of every tenant (for the backup and
#                         settings checks); from the aiaudit-secrets Secret
#   AIAUDIT_BG_NAMESPACE  Kubernetes namespace (default aiaudit)
#   AIAUDIT_BG_STATE      directory for the saved checkpoint and verifier key
#                         (default ./blue-green-state)
#   AIAUDIT_BG_VALIDATE   extra arguments for `aiaudit validate`
#   AIAUDIT_BG_VKEY       the log's verifier key (default: kept in the state
#                         directory, first read from the live Service)
#   AIAUDIT_BG_SERVICE_URL, AIAUDIT_BG_BLUE_URL, AIAUDIT_BG_GREEN_URL
#                         the Service's and each slot's address (default on
#                         Kubernetes: kubectl port-forward to https://localhost)
#   AIAUDIT_CA_CERT       CA of the ledger's TLS certificate (as for aiaudit)
#   AIAUDIT_BIN           the aiaudit binary (default: aiaudit on PATH)
#   KUBECTL               kubectl (default: kubectl on PATH)
#
# AIAUDIT_BG_PLATFORM=local runs the same decisions without a cluster (how
# tests/e2e/kubernetes.rs exercises this script, and usable on plain
# machines behind a proxy): the slots are ledgers already running at the
# URLs above, and switching writes the slot's name to AIAUDIT_BG_SWITCH_FILE,
# which the proxy in front reads (then runs AIAUDIT_BG_SWITCH_HOOK, if set,
# e.g. to reload nginx).
set -euo pipefail

AIAUDIT_BIN=${AIAUDIT_BIN:-aiaudit}
KUBECTL=${KUBECTL:-kubectl}
NS=${AIAUDIT_BG_NAMESPACE:-aiaudit}
STATE=${AIAUDIT_BG_STATE:-./blue-green-state}
PLATFORM=${AIAUDIT_BG_PLATFORM:-kubernetes}
mkdir -p "$STATE"
read -r -a VALIDATE_EXTRA <<< "${AIAUDIT_BG_VALIDATE:-}"

say() { printf 'blue-green: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }
other() { if [ "$1" = blue ]; then echo green; else echo blue; fi; }

# curl trusts what the aiaudit CLI trusts (--ca-cert's variable).
CURL_TLS=()
if [ -n "${AIAUDIT_CA_CERT:-}" ]; then CURL_TLS=(--cacert "$AIAUDIT_CA_CERT"); fi

cleanup() {
  if [ -f "$STATE/forwards" ]; then
    while read -r pid; do kill "$pid" 2>/dev/null || true; done < "$STATE/forwards"
    rm -f "$STATE/forwards"
  fi
}
trap cleanup EXIT

# ---- platform: Kubernetes -------------------------------------------------

k() { "$KUBECTL" -n "$NS" "$@"; }

k8s_active() { k get service aiaudit -o go-template='{{index .spec.selector "slot"}}'; }

k8s_replicas() { k get deployment "aiaudit-$1" -o go-template='{{.spec.replicas}}'; }

k8s_image() { k get deployment "aiaudit-$1" -o go-template='{{(index .spec.template.spec.containers 0).image}}'; }

# Give the idle slot the new image and as many pods as the live one has, and
# wait until every pod is ready.
k8s_deploy() {
  local slot=$1 image=$2 replicas
  replicas=$(k8s_replicas "$(other "$slot")")
  [ "$replicas" -ge 3 ] || replicas=3
  k set image "deployment/aiaudit-$slot" "aiaudit=$image" >&2
  k scale "deployment/aiaudit-$slot" --replicas="$replicas" >&2
  k rollout status "deployment/aiaudit-$slot" --timeout=15m >&2
}

# A local port forwarded to a Service; prints the URL. The ledger's TLS
# certificate must name `localhost` for this (or set the AIAUDIT_BG_*_URL
# variables to addresses whose names it carries, e.g. per-slot Ingresses).
k8s_forward() {
  local service=$1 port
  port=$(( 20000 + RANDOM % 20000 ))
  k port-forward "service/$service" "$port:7381" >/dev/null 2>&1 &
  echo "$!" >> "$STATE/forwards"
  for _ in $(seq 100); do
    # Only whether the forward is up; `validate` checks the certificate.
    if curl -ks -o /dev/null "https://localhost:$port/healthz"; then
      echo "https://localhost:$port"
      return
    fi
    sleep 0.1
  done
  die "port-forward to service/$service did not come up"
}

# The Service and the autoscaler follow the slot together.
k8s_switch() {
  local slot=$1
  k patch service aiaudit --type merge -p "{\"spec\":{\"selector\":{\"slot\":\"$slot\"}}}" >&2
  k patch hpa aiaudit --type merge -p "{\"spec\":{\"scaleTargetRef\":{\"name\":\"aiaudit-$slot\"}}}" >&2
}

k8s_retire() { k scale "deployment/aiaudit-$1" --replicas=0 >&2; }

# Before traffic goes back to a slot `finish` emptied: as many pods as the
# live slot has, all ready.
k8s_ready_slot() {
  local slot=$1 replicas
  replicas=$(k8s_replicas "$(other "$slot")")
  [ "$replicas" -ge 3 ] || replicas=3
  if [ "$(k8s_replicas "$slot")" -lt "$replicas" ]; then
    k scale "deployment/aiaudit-$slot" --replicas="$replicas" >&2
  fi
  k rollout status "deployment/aiaudit-$slot" --timeout=15m >&2
}

# ---- platform: local (two running ledgers behind a proxy) ------------------

local_active() { tr -d '[:space:]' < "${AIAUDIT_BG_SWITCH_FILE:?}"; }

local_deploy() {
  local url
  url=$(url_of "aiaudit-$1")
  for _ in $(seq 300); do
    if curl "${CURL_TLS[@]}" -fs -o /dev/null "$url/readyz"; then return; fi
    sleep 0.1
  done
  die "the $1 slot at $url is not ready"
}

local_switch() {
  printf '%s\n' "$1" > "${AIAUDIT_BG_SWITCH_FILE:?}.tmp"
  mv "${AIAUDIT_BG_SWITCH_FILE}.tmp" "$AIAUDIT_BG_SWITCH_FILE"
  if [ -n "${AIAUDIT_BG_SWITCH_HOOK:-}" ]; then bash -c "$AIAUDIT_BG_SWITCH_HOOK" >&2; fi
}

# ---- the platform's verbs ---------------------------------------------------

active() { if [ "$PLATFORM" = local ]; then local_active; else k8s_active; fi; }
deploy_slot() { if [ "$PLATFORM" = local ]; then local_deploy "$1"; else k8s_deploy "$1" "$2"; fi; }
switch_to() { say "switching the Service to $1"; if [ "$PLATFORM" = local ]; then local_switch "$1"; else k8s_switch "$1"; fi; }
# url_of SERVICE (aiaudit, aiaudit-blue, aiaudit-green): its address as given,
# else (Kubernetes) a port-forward to it.
url_of() {
  local var
  case $1 in
    aiaudit) var=AIAUDIT_BG_SERVICE_URL ;;
    aiaudit-blue) var=AIAUDIT_BG_BLUE_URL ;;
    aiaudit-green) var=AIAUDIT_BG_GREEN_URL ;;
    *) die "no such service: $1" ;;
  esac
  if [ -n "${!var:-}" ]; then
    echo "${!var}"
  elif [ "$PLATFORM" = kubernetes ]; then
    k8s_forward "$1"
  else
    die "$var is not set"
  fi
}
retire() { if [ "$PLATFORM" = local ]; then say "local: stop the $1 ledger yourself"; else k8s_retire "$1"; fi; }
ready_slot() { if [ "$PLATFORM" = local ]; then local_deploy "$1"; else k8s_ready_slot "$1"; fi; }

# The Service's address as it routes now. A port-forward stays on the pod it
# picked when it started, so after a switch it is opened again (and reaches
# a pod of the slot the selector now names).
service_url_now() {
  if [ "$PLATFORM" = kubernetes ] && [ -z "${AIAUDIT_BG_SERVICE_URL:-}" ]; then
    cleanup
  fi
  url_of aiaudit
}

# ---- the decisions -----------------------------------------------------------

# validate WHAT URL: `aiaudit validate` against the trusted verifier key and
# the checkpoint saved so far (which it moves forward when consistent).
validate() {
  local what=$1 url=$2
  say "validating $what at $url"
  if "$AIAUDIT_BIN" validate --url "$url" --verifier-key "$STATE/log.vkey" \
      --checkpoint-file "$STATE/checkpoint" "${VALIDATE_EXTRA[@]}" >&2; then
    say "$what: passed"
  else
    say "$what: FAILED"
    return 1
  fi
}

cmd_deploy() {
  local image=${1:-} live idle service_url idle_url
  [ -n "$image" ] || [ "$PLATFORM" = local ] || die "usage: blue-green.sh deploy IMAGE"
  live=$(active)
  idle=$(other "$live")
  say "live slot: $live; deploying ${image:-the running build} to $idle"

  # Before anything changes: the live log's key and checkpoint, as the
  # Service serves them now. Everything after must be consistent with them.
  service_url=$(url_of aiaudit)
  if [ -n "${AIAUDIT_BG_VKEY:-}" ]; then
    printf '%s\n' "$AIAUDIT_BG_VKEY" > "$STATE/log.vkey"
  elif [ ! -s "$STATE/log.vkey" ]; then
    # First use: trust what the live Service announces (over verified TLS),
    # and keep it for every later deployment.
    { curl "${CURL_TLS[@]}" -fs "$service_url/v1/info" || true; } \
      | sed -n 's/.*"verifier_key":"\([^"]*\)".*/\1/p' > "$STATE/log.vkey"
    [ -s "$STATE/log.vkey" ] || die "could not read the log's verifier key from $service_url/v1/info"
    say "trusting the live log's key $(cut -d+ -f1-2 "$STATE/log.vkey") (kept in $STATE/log.vkey)"
  fi
  rm -f "$STATE/checkpoint"
  validate "the live slot ($live) before the deployment" "$service_url" \
    || die "the live slot fails validation before anything changed: fix that first"

  deploy_slot "$idle" "$image"
  idle_url=$(url_of "aiaudit-$idle")
  if ! validate "the new slot ($idle) before the switch" "$idle_url"; then
    say "the Service stays on $live; the $idle slot is left for inspection"
    exit 1
  fi

  switch_to "$idle"
  service_url=$(service_url_now)
  if ! validate "the Service after the switch" "$service_url"; then
    say "ROLLING BACK to $live"
    switch_to "$live"
    service_url=$(service_url_now)
    validate "the Service after the rollback" "$service_url" || say "the rollback's validation failed too: page the on-call"
    exit 1
  fi
  say "done: $idle serves; $live keeps running for a rollback (blue-green.sh rollback) until blue-green.sh finish"
}

cmd_rollback() {
  local live back url
  live=$(active)
  back=$(other "$live")
  ready_slot "$back"
  switch_to "$back"
  url=$(service_url_now)
  if ! validate "the Service after the rollback" "$url"; then
    say "the $back slot fails validation: switching back to $live"
    switch_to "$live"
    exit 1
  fi
}

cmd_finish() {
  local live
  live=$(active)
  say "retiring the $(other "$live") slot"
  retire "$(other "$live")"
}

cmd_status() {
  local live
  live=$(active)
  echo "live: $live"
  if [ "$PLATFORM" != local ]; then
    for slot in blue green; do
      echo "$slot: $(k8s_image "$slot") x$(k8s_replicas "$slot")"
    done
  fi
}

case ${1:-} in
  deploy) shift; cmd_deploy "$@" ;;
  rollback) cmd_rollback ;;
  finish) cmd_finish ;;
  status) cmd_status ;;
  *) sed -n '2,9p' "$0" >&2; exit 2 ;;
esac
