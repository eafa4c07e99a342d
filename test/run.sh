#!/usr/bin/env bash
# `npm test`: system packages, node_modules, build, then jest (which starts and stops its own
# Redis and Ceph RGW; see test/infra/global-setup.ts). Arguments go to jest, e.g.
#   npm test -- test/infra.test.ts        bash test/run.sh -t 'multipart'
# TEST_REUSE_SERVICES=1 keeps the services running between runs (faster local iteration).
# The exit code is jest's.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/ensure-system-deps.sh test
if [ ! -d node_modules ]; then npm ci; fi
npm run build --silent
exec npm run test:jest --silent -- "$@"
