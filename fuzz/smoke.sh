#!/usr/bin/env bash
# Bounded fuzzing round for CI: builds every fuzz target once, then runs each
# for FUZZ_SECONDS (default 10) starting from the committed seed corpus.
# Exits non-zero if any target crashes, panics, fails an invariant, times out
# or runs out of memory; the input that did it is left in
# fuzz/artifacts/<target>/ (see README.md).
#
#   bash fuzz/smoke.sh                 # every target, 10 s each
#   FUZZ_SECONDS=30 bash fuzz/smoke.sh safe_next record_decode
set -euo pipefail
cd "$(dirname "$0")"

# cargo-fuzz needs nightly-only flags (-Zsanitizer, ...): let the stable
# toolchain accept them.
export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
seconds="${FUZZ_SECONDS:-10}"
started=$(date +%s)

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi

echo "=== building ${#targets[@]} fuzz targets"
cargo fuzz build

# New inputs go to a scratch corpus (the first directory libFuzzer is given),
# never into the committed seeds.
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# Run the built binaries directly (as `cargo fuzz run` would, without its
# second cargo invocation per target).
bin_dir="target/$(rustc -vV | sed -n 's/^host: //p')/release"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_odr_violation=0}"

failed=()
for target in "${targets[@]}"; do
  echo "=== $target (${seconds}s, $(( $(date +%s) - started ))s elapsed)"
  mkdir -p "$scratch/$target" "corpus/$target" "artifacts/$target"
  if ! "$bin_dir/$target" -artifact_prefix="artifacts/$target/" \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      "$scratch/$target" "corpus/$target" >"$scratch/$target.log" 2>&1; then
    failed+=("$target")
    grep -A4 -E "panicked at|^==[0-9]+==ERROR" "$scratch/$target.log" | head -n 20 || true
    echo "..."
    tail -n 25 "$scratch/$target.log"
    echo "!!! $target failed; the input is in fuzz/artifacts/$target/"
  else
    grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|Done )' "$scratch/$target.log" || true
  fi
done

echo "=== build and fuzzing took $(( $(date +%s) - started ))s"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "failed: ${failed[*]}"
  exit 1
fi
echo "all ${#targets[@]} targets ran ${seconds}s without a crash"
