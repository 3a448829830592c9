#!/usr/bin/env bash
# The test command (README "Run the tests"): every Rust test of the workspace,
# the Flask interop tests and the browser tests.
#
# Tests that need a service read its URL from the environment:
#   KEYCARD_TEST_REDIS_URL          redis://127.0.0.1:6379
#   KEYCARD_TEST_REDIS_CLUSTER_URL  redis+cluster://127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003
#   KEYCARD_TEST_POSTGRES_URL       postgres://postgres@127.0.0.1:5432/test
# This script fills in the ones whose service answers on its usual port (and
# starts the throwaway Redis Cluster when redis-server is installed). A test
# whose service is missing skips with a loud message, except under CI=true,
# where a missing service is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if [ -z "${KEYCARD_TEST_REDIS_URL:-}" ] && port_open 6379; then
  export KEYCARD_TEST_REDIS_URL=redis://127.0.0.1:6379
fi
if [ -z "${KEYCARD_TEST_POSTGRES_URL:-}" ] && port_open 5432; then
  export KEYCARD_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test
fi
if [ -z "${KEYCARD_TEST_REDIS_CLUSTER_URL:-}" ] && command -v redis-server >/dev/null; then
  cluster_dir=$(mktemp -d /tmp/keycard-cluster.XXXXXX)
  if bash crates/keycard-redis/scripts/cluster.sh start "$cluster_dir" >/dev/null; then
    export KEYCARD_TEST_REDIS_CLUSTER_URL=redis+cluster://127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003
    trap 'bash crates/keycard-redis/scripts/cluster.sh stop "$cluster_dir" >/dev/null 2>&1 || true' EXIT
  else
    echo "WARNING: could not start the Redis Cluster; cluster tests will skip" >&2
  fi
fi
echo "services: redis=${KEYCARD_TEST_REDIS_URL:-none} cluster=${KEYCARD_TEST_REDIS_CLUSTER_URL:-none} postgres=${KEYCARD_TEST_POSTGRES_URL:-none}"

cargo test --workspace --all-features --no-fail-fast 2>&1 | tee /tmp/keycard-test.log
status=${PIPESTATUS[0]}
# How many tests ran against each store (the conformance kit and the store
# crates' own tests), so a skipped store cannot pass unnoticed.
awk '
  /Running .*keycard_sqlite|Running tests\/sqlite.rs/ {store="sqlite"}
  /Running tests\/standalone.rs/ {store="redis"}
  /Running tests\/cluster.rs/ {store="redis-cluster"}
  /Running tests\/postgres.rs/ {store="postgres"}
  /Running tests\/fault.rs/ {store="fault"}
  /Running tests\/concurrency.rs/ {store="cross-store"}
  /Running/ && !/sqlite|standalone|cluster|postgres|fault|concurrency/ {store=""}
  /Doc-tests/ {store=""}
  /^test .* ok$/ && /SKIPPED/ {next}
  /^test result:/ && store != "" {n[store]+=$4}
  END {printf "store tests passed:"; for (s in n) printf " %s=%d", s, n[s]; print ""}
' /tmp/keycard-test.log
skipped=$(grep -c '\*\*\* SKIPPED' /tmp/keycard-test.log || true)
echo "tests that skipped for a missing service: $skipped"
[ "$status" = 0 ] || exit "$status"

if [ -x tests/browser/run.sh ]; then
  bash tests/browser/run.sh
fi
