#!/usr/bin/env bash
# All tests: unit and integration, in the dev build and again under ASan+UBSan.
# Usage: bash tests/run_tests.sh [dev|asan]...   (default: dev asan)
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/install-deps.sh
presets=("$@")
[ ${#presets[@]} -gt 0 ] || presets=(dev asan)
for preset in "${presets[@]}"; do
  echo "=== preset $preset: configure and build"
  cmake --preset "$preset" >/dev/null
  cmake --build --preset "$preset" -j "$(nproc)"
  echo "=== preset $preset: tests"
  ctest --preset "$preset" --output-on-failure
done
