#!/usr/bin/env bash
# Builds the libFuzzer targets (preset `fuzz`: clang 16, ASan+UBSan), replays
# every kept crash input (tests/fuzz/regressions/<target>/), then fuzzes each
# target for a bounded time starting from its seed corpus
# (tests/fuzz/corpus/<target>/). A new crash input is written to
# regressions/<target>/ (commit it with the fix: it is replayed from then on).
#
# Usage: bash tests/fuzz/run.sh [TARGET...]       (default: every fuzz_* target)
#   FUZZ_SECONDS   time per target (default 20)
#   FUZZ_KEEP=DIR  keep the grown corpora in DIR (default: a temporary directory)
# Prints executions and seconds per target; exits 1 when any input crashed.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${FUZZ_SECONDS:-20}
here=tests/fuzz

if ! command -v clang++-16 >/dev/null; then
  if [ "$(id -u)" -eq 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang-16 libclang-rt-16-dev >/dev/null
  else
    echo "fuzz: clang++-16 is missing: apt-get install clang-16 libclang-rt-16-dev" >&2
    exit 1
  fi
fi
cmake --preset fuzz >/dev/null
cmake --build --preset fuzz -j "${FUZZ_BUILD_JOBS:-2}" >/dev/null
bin=build/fuzz/tests/fuzz

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for src in "$here"/fuzz_*.cpp; do targets+=("$(basename "$src" .cpp)"); done
fi

work=${FUZZ_KEEP:-$(mktemp -d)}
[ -n "${FUZZ_KEEP:-}" ] || trap 'rm -rf "$work"' EXIT
failed=0
printf '%-18s %10s %8s %s\n' target executions seconds result
for t in "${targets[@]}"; do
  mkdir -p "$work/$t" "$here/regressions/$t"
  log="$work/$t.log"
  # The kept crash inputs first: each must pass now.
  shopt -s nullglob
  kept=("$here/regressions/$t"/*)
  shopt -u nullglob
  if [ ${#kept[@]} -gt 0 ] && ! "$bin/$t" "${kept[@]}" >"$log" 2>&1; then
    printf '%-18s %10s %8s %s\n' "$t" - - "a kept regression input fails again (see $log)"
    tail -20 "$log" >&2
    failed=1
    continue
  fi
  result=ok
  if ! "$bin/$t" -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="$here/regressions/$t/" "$work/$t" "$here/corpus/$t" >"$log" 2>&1; then
    result="CRASH (input kept in $here/regressions/$t/; log $log)"
    tail -40 "$log" >&2
    failed=1
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
  printf '%-18s %10s %8s %s (%d kept inputs replayed)\n' "$t" "${execs:-?}" "${secs:-$seconds}" "$result" \
    "${#kept[@]}"
done
exit $failed
