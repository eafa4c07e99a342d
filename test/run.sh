#!/usr/bin/env bash
# `npm test` and the tier scripts (jest.config.js describes the tiers):
#   bash test/run.sh                      every tier: unit first (no services; stops here if it
#                                         fails) while dist/ is built, then integration + e2e in one
#                                         jest run (Redis, RGW and clamd start once for both)
#   bash test/run.sh unit|integration|e2e [jest args]   one tier (npm run test:unit etc.)
#   bash test/run.sh [jest args]          jest with these arguments over every tier, after the build:
#     npm test -- test/e2e/tus-protocol.test.ts        bash test/run.sh -t 'multipart'
# The services are started by jest itself (test/infra/global-setup.ts) when an integration or e2e
# test runs; TEST_REUSE_SERVICES=1 keeps them running between runs (faster local iteration).
# The exit code is jest's.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# (--selectProjects takes every word after it: it goes after the caller's arguments.)
jest() { npm run test:jest --silent -- "$@"; }
build() { npm run build --silent; }

if [ ! -d node_modules ]; then npm ci; fi

tier=${1:-}
case $tier in
  unit)
    shift
    jest "$@" --selectProjects unit; exit ;;
  integration)
    shift
    bash scripts/ensure-system-deps.sh test
    jest "$@" --selectProjects integration; exit ;;
  e2e)
    shift
    bash scripts/ensure-system-deps.sh test
    build
    jest "$@" --selectProjects e2e; exit ;;
esac

bash scripts/ensure-system-deps.sh test
if [ $# -gt 0 ]; then
  build
  jest "$@"
  exit
fi
# The build (tsc, one core) runs while the unit tier runs: the unit tests do not use dist/.
build &
building=$!
if ! jest --selectProjects unit; then
  wait "$building" || true
  exit 1
fi
if ! wait "$building"; then
  echo "test/run.sh: npm run build failed (its errors are above)" >&2
  exit 1
fi
jest --selectProjects integration e2e
