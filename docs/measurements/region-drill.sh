#!/usr/bin/env bash
# The region drill at a realistic size (docs/operations.md, "Losing a region"):
# a ledger with EVENTS AI events backs up to object storage standing in for
# another region (moto's S3 server), then `aiaudit dr drill` restores that
# backup, serves and verifies it, and measures RTO and RPO against the
# seed's 15 min / 1 h: once with the region alive (--url: events behind
# counted), once after the ledger is killed (the region lost).
#
#   EVENTS=1000000 bash docs/measurements/region-drill.sh   # release build
#
# Needs: target/release/aiaudit (cargo build --release -p aiaudit), python3
# with moto[server] and boto3, curl.
set -euo pipefail
B=${B:-$(pwd)/target/release/aiaudit}
EVENTS=${EVENTS:-1000000}
W=$(mktemp -d /tmp/region-drill.XXXXXX)
S3_PORT=${S3_PORT:-17490}
LEDGER_PORT=${LEDGER_PORT:-17491}
export AWS_ENDPOINT_URL=http://127.0.0.1:$S3_PORT AWS_ACCESS_KEY_ID=testing \
  AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 AWS_ALLOW_HTTP=true
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT

python3 -m moto.server -H 127.0.0.1 -p "$S3_PORT" >/dev/null 2>&1 &
pids+=("$!")
until curl -s -o /dev/null "$AWS_ENDPOINT_URL"; do sleep 0.2; done
python3 -c "import boto3; boto3.client('s3', endpoint_url='$AWS_ENDPOINT_URL', \
  aws_access_key_id='testing', aws_secret_access_key='testing', \
  region_name='us-east-1').create_bucket(Bucket='region-b')"

"$B" serve --data-dir "$W/data" --listen "127.0.0.1:$LEDGER_PORT" > "$W/serve.log" 2>&1 &
pids+=("$!"); SERVE=$!
URL=http://127.0.0.1:$LEDGER_PORT
until curl -fs -o /dev/null "$URL/readyz"; do sleep 0.2; done
ADMIN=$(cat "$W/data/admin.token")
VKEY=$(cat "$W/data/log.vkey")

echo "== load: $EVENTS AI events"
"$B" bench --url "$URL" --token "$ADMIN" --events "$EVENTS" --content ai --json | tee "$W/bench.json"
until [ "$(curl -fs "$URL/v1/info" | python3 -c 'import sys,json; print(json.load(sys.stdin)["size"])')" -ge "$EVENTS" ]; do sleep 0.2; done

echo "== backup to s3://region-b/ledger"
/usr/bin/time -f "backup: %e s wall, %M KiB max RSS" \
  "$B" backup create --url "$URL" --token "$ADMIN" --to s3://region-b/ledger --json

echo "== 1,000 events after the backup (what a restore from it loses)"
"$B" bench --url "$URL" --token "$ADMIN" --events 1000 --content ai --json > /dev/null
until [ "$(curl -fs "$URL/v1/info" | python3 -c 'import sys,json; print(json.load(sys.stdin)["size"])')" -ge "$((EVENTS + 1000))" ]; do sleep 0.2; done

echo "== the monthly drill, the region alive"
/usr/bin/time -f "drill: %e s wall, %M KiB max RSS" \
  "$B" dr drill --from s3://region-b/ledger --url "$URL" --vkey "$VKEY" \
    --signing-key "$W/data/log.key" --master-key-file "$W/data/master.key" \
    --rto-objective 15m --rpo-objective 1h --scratch "$W/drill1"

echo "== the region lost: the ledger killed"
kill -9 "$SERVE"
/usr/bin/time -f "drill: %e s wall, %M KiB max RSS" \
  "$B" dr drill --from s3://region-b/ledger --vkey "$VKEY" \
    --signing-key "$W/data/log.key" --master-key-file "$W/data/master.key" \
    --rto-objective 15m --rpo-objective 1h --scratch "$W/drill2" --json
rm -rf "$W"
