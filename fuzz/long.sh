#!/usr/bin/env bash
# Long fuzzing runs, by hand: every target (or those named) for SECONDS each
# (default 600), growing a working corpus that persists between runs in
# fuzz/target/long-corpus/<target> (kept out of git), seeded from the
# committed corpus, and minimized (merged) after each run. A target that
# crashes is reported and the next one still runs; the script then exits 1.
# Crash inputs are in fuzz/artifacts/<target>/ (see README.md).
#
#   bash fuzz/long.sh                 # every target, 10 minutes each
#   bash fuzz/long.sh 3600 flask_payload record_decode
set -euo pipefail
cd "$(dirname "$0")"

export RUSTC_BOOTSTRAP=1 # cargo-fuzz's nightly-only flags, on stable
seconds="${1:-600}"
shift || true

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi

cargo fuzz build
work=target/long-corpus
logs=target/long-logs
mkdir -p "$logs"

failed=()
for target in "${targets[@]}"; do
  mkdir -p "$work/$target" "corpus/$target"
  before=$(find "$work/$target" -type f | wc -l)
  echo "=== $target: ${seconds}s from $before working + $(find "corpus/$target" -type f | wc -l) seed inputs (log: fuzz/$logs/$target.log)"
  if ! cargo fuzz run "$target" "$work/$target" "corpus/$target" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      >"$logs/$target.log" 2>&1; then
    failed+=("$target")
    grep -A4 -E "panicked at|^==[0-9]+==ERROR" "$logs/$target.log" | head -n 20 || true
    echo "..."
    tail -n 25 "$logs/$target.log"
    echo "!!! $target failed; the input is in fuzz/artifacts/$target/"
    continue
  fi
  grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|Done )' "$logs/$target.log" || true
  # Merge: keep only the inputs that add coverage.
  cargo fuzz cmin "$target" "$work/$target" >"$logs/$target.cmin.log" 2>&1 \
    || echo "(corpus minimization failed; see fuzz/$logs/$target.cmin.log)"
  echo "    working corpus: $before -> $(find "$work/$target" -type f | wc -l) inputs"
done

echo "To promote an input into the committed seeds, copy it by hand into"
echo "fuzz/corpus/<target>/ (a few small files per target)."
if [ "${#failed[@]}" -gt 0 ]; then
  echo "failed: ${failed[*]}"
  exit 1
fi
