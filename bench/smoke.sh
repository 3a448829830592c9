#!/usr/bin/env bash
# Smoke round of the load harness, for CI: builds the harness (debug profile,
# see below), runs every server variant for 1 s per route, checks that every
# route answers, that no keycard store loses an increment under 32 concurrent
# writers and that the Redis round-trip counter works, runs the scale program
# on 20,000 sessions, and prints the tables. Fails if any check fails; the
# timings it prints are NOT benchmark results (unoptimized build, 1 round).
#
# Why debug: a cold release build of bench/ (tower-sessions, fred, axum-extra,
# SQLite's C sources) took 6.5 min on the 2-core CI machine, the debug one
# without debug info about 3 min; the full benchmark (run.sh) is release.
set -euo pipefail
cd "$(dirname "$0")"
started=$(date +%s)
if ! command -v wrk >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
cargo build --bins
bin=${CARGO_TARGET_DIR:-target}/debug
built=$(date +%s)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
status=0
taskset -c 0 "$bin/harness" --smoke --out "$out" || status=1
"$bin/scale" --quick --only memory,bounded,sweep,sqlite --out "$out" || status=1
echo "smoke: build $((built - started)) s, rounds $(( $(date +%s) - built )) s, total $(( $(date +%s) - started )) s"
exit "$status"
