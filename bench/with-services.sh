#!/usr/bin/env bash
# Runs a benchmark command with a private Redis and a Ceph RGW (S3) of its own, on loopback,
# started with the test infrastructure's scripts under .tmp/bench-services and stopped after.
#   bash bench/with-services.sh node dist/bench/memory.js
# Exports BENCH_S3_ENDPOINT, BENCH_S3_ACCESS_KEY_ID, BENCH_S3_SECRET_ACCESS_KEY, BENCH_S3_BUCKET,
# BENCH_S3_REGION, BENCH_REDIS_URL for the command, and BENCH_CEPH_CONF (the cluster's ceph.conf:
# benches find its radosgw / ceph-osd / ceph-mon processes by it, for their CPU time, and run its
# garbage collector between uploads). Ports: BENCH_RGW_PORT (37480),
# BENCH_MON_PORT (37300), BENCH_REDIS_PORT (37379).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=$root/.tmp/bench-services
bash "$root/scripts/ensure-system-deps.sh" test
export DIR=$dir/rgw RGW_PORT=${BENCH_RGW_PORT:-37480} MON_PORT=${BENCH_MON_PORT:-37300} AK=bench-key SK=bench-secret BUCKET=bench
stop() { DIR=$dir/rgw bash "$root/test/infra/rgw.sh" stop || true; DIR=$dir/redis bash "$root/test/infra/redis.sh" stop || true; }
trap stop EXIT
bash "$root/test/infra/rgw.sh" start >/dev/null
DIR=$dir/redis PORT=${BENCH_REDIS_PORT:-37379} bash "$root/test/infra/redis.sh" start >/dev/null
export BENCH_S3_ENDPOINT=http://127.0.0.1:$RGW_PORT BENCH_S3_ACCESS_KEY_ID=$AK BENCH_S3_SECRET_ACCESS_KEY=$SK \
  BENCH_S3_BUCKET=$BUCKET BENCH_S3_REGION=us-east-1 BENCH_REDIS_URL=redis://127.0.0.1:${BENCH_REDIS_PORT:-37379} \
  BENCH_CEPH_CONF=$DIR/ceph.conf
unset DIR RGW_PORT MON_PORT AK SK BUCKET
"$@"
