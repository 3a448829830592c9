#!/usr/bin/env bash
# Reruns the whole benchmark (issue 8) and writes bench/results/:
#   1. the load harness: every server variant, ROUNDS interleaved rounds of
#      RUN_SECONDS per route, server pinned to CPU 1 and wrk to CPU 0;
#   2. the scale program: memory per session at SESSIONS sessions, bounded
#      memory under a stream of new sessions, sweep time, SQLite and Redis at
#      SESSIONS sessions;
#   3. the criterion micro-benchmarks;
#   4. user-space instructions per request under callgrind (exact, noise-free;
#      scripts/instructions.sh), when valgrind is installed.
# Bounded: about 8 + 4 + 2 + 3 minutes on a 2-core machine (after the build).
# Every target is on 127.0.0.1; Redis is a private redis-server the harness
# starts on a free port (or BENCH_REDIS_URL, never database 0).
set -euo pipefail
cd "$(dirname "$0")"
ROUNDS=${ROUNDS:-5}
RUN_SECONDS=${RUN_SECONDS:-2}
SESSIONS=${SESSIONS:-1000000}
OUT=${OUT:-results}
mkdir -p "$OUT"

if ! command -v wrk >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
cargo build --release --bins
bin=${CARGO_TARGET_DIR:-target}/release

{
  echo "date: $(date -u +%FT%TZ)"
  echo "nproc: $(nproc)"
  echo "cpu: $(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1)"
  echo "memory: $(free -g | awk '/^Mem:/ {print $2 " GiB"}')"
  echo "kernel: $(uname -r)"
  echo "rustc: $(rustc --version)"
  echo "wrk: $(wrk -v 2>&1 | head -1)"
  echo "redis: $(redis-server --version 2>/dev/null || echo none)"
  echo "keycard commit: $(git -C .. rev-parse --short HEAD 2>/dev/null || echo unknown)"
} > "$OUT/machine.txt"
cat "$OUT/machine.txt"

# The load generator (and this script's children) stay on CPU 0; the
# harness puts each server, and the private Redis, on CPU 1.
# A failed check (route, lost increment) fails the script, after every part ran.
status=0
taskset -c 0 "$bin/harness" --rounds "$ROUNDS" --seconds "$RUN_SECONDS" --out "$OUT" || status=1
"$bin/scale" --sessions "$SESSIONS" --out "$OUT" || status=1
cargo bench --bench micro -- --warm-up-time 1 --measurement-time 2 --noplot 2>&1 \
  | grep -vE '^(Benchmarking|Gnuplot|Found|  [0-9]+ \()|change:|Performance has|No change in|Change within|\[[+-][0-9.]+%|^ *(Compiling|Downloaded|Downloading|Finished|Running|Updating|Locking|Adding) ' \
  | tee "$OUT/micro.txt" || status=1
if command -v valgrind >/dev/null; then
  bash scripts/instructions.sh 5000 > "$OUT/instructions.md" || status=1
  cat "$OUT/instructions.md"
else
  echo "valgrind not installed: no instruction counts" >&2
fi
exit "$status"
