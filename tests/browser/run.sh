#!/usr/bin/env bash
# Browser tests for keycard-demo: builds the demo if needed, starts it on free
# loopback ports with a fresh data dir, runs `node --test` against it (Playwright
# driving Debian's Chromium), stops the demo and exits with the tests' status.
#
#   tests/browser/run.sh                # run the tests
#   tests/browser/run.sh --screenshots  # also write docs/screenshots/*.png
#
# Needs /usr/bin/chromium (apt-get install chromium) and node_modules
# (npm ci in tests/browser). Without them it prints SKIP and exits 0, or
# exits 1 when CI=true.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
CHROMIUM="${KEYCARD_CHROMIUM:-/usr/bin/chromium}"
TEST_BUDGET="${KEYCARD_BROWSER_TEST_BUDGET:-150}" # seconds for node --test as a whole

for arg in "$@"; do
  case "$arg" in
    --screenshots) export KEYCARD_SCREENSHOTS=1 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument: $arg (try --screenshots)" >&2; exit 2 ;;
  esac
done

skip() {
  echo "############################################################" >&2
  echo "## SKIP: keycard browser tests NOT RUN: $1" >&2
  echo "############################################################" >&2
  if [ "${CI:-}" = "true" ]; then
    echo "## CI=true: a skipped browser test run is a failure." >&2
    exit 1
  fi
  exit 0
}

[ -x "$CHROMIUM" ] || skip "$CHROMIUM is missing (apt-get install -y chromium)"
command -v node >/dev/null || skip "node is missing"
[ -d "$HERE/node_modules/playwright-core" ] || skip "tests/browser/node_modules is missing (run: cd tests/browser && npm ci)"

# Build the demo (a no-op when it is up to date; may wait on the cargo lock).
DEMO="${KEYCARD_DEMO_BIN:-}"
if [ -z "$DEMO" ]; then
  echo "run.sh: cargo build -p keycard-demo" >&2
  (cd "$REPO" && cargo build -p keycard-demo)
  DEMO="${CARGO_TARGET_DIR:-$REPO/target}/debug/keycard-demo"
fi
[ -x "$DEMO" ] || { echo "run.sh: no demo binary at $DEMO" >&2; exit 1; }

DATA_DIR="$(mktemp -d -t keycard-browser.XXXXXX)"
DEMO_PID=""
cleanup() {
  if [ -n "$DEMO_PID" ] && kill -0 "$DEMO_PID" 2>/dev/null; then
    kill "$DEMO_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$DEMO_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$DEMO_PID" 2>/dev/null || true
  fi
  rm -rf "$DATA_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Two free loopback ports (the demo prints the address it was given, so port 0 won't do).
read -r HTTPS_PORT HTTP_PORT < <(node -e '
  const net = require("net");
  const grab = () => new Promise((ok) => { const s = net.createServer(); s.listen(0, "127.0.0.1", () => ok(s)); });
  Promise.all([grab(), grab()]).then((ss) => { console.log(ss.map((s) => s.address().port).join(" ")); ss.forEach((s) => s.close()); });
')

LOG="$DATA_DIR/demo.log"
"$DEMO" --data-dir "$DATA_DIR" --https "127.0.0.1:$HTTPS_PORT" --http "127.0.0.1:$HTTP_PORT" >"$LOG" 2>&1 &
DEMO_PID=$!

BASE_URL=""
for _ in $(seq 1 300); do # up to 30 s
  if line="$(grep -m1 '^keycard-demo listening on https://' "$LOG")"; then
    BASE_URL="$(echo "$line" | sed -E 's#^keycard-demo listening on (https://[^ ]*).*#\1#; s#/$##')"
    break
  fi
  if ! kill -0 "$DEMO_PID" 2>/dev/null; then
    echo "run.sh: keycard-demo exited before listening:" >&2; cat "$LOG" >&2; exit 1
  fi
  sleep 0.1
done
[ -n "$BASE_URL" ] || { echo "run.sh: keycard-demo did not print its listening line within 30 s:" >&2; cat "$LOG" >&2; exit 1; }
echo "run.sh: keycard-demo is listening on $BASE_URL (data dir $DATA_DIR)" >&2

cd "$HERE"
status=0
KEYCARD_BASE_URL="$BASE_URL" KEYCARD_CHROMIUM="$CHROMIUM" \
  timeout --kill-after=10 "$TEST_BUDGET" \
  node --test --test-timeout=60000 ./*.test.js || status=$?
if [ "$status" = 124 ] || [ "$status" = 137 ]; then
  echo "run.sh: the browser tests overran their ${TEST_BUDGET}s budget" >&2
fi
if [ "$status" != 0 ]; then
  echo "run.sh: demo log (last 40 lines):" >&2; tail -n 40 "$LOG" >&2
fi
exit "$status"
