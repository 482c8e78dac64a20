#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds twice (plain, and
# with AddressSanitizer + UndefinedBehaviorSanitizer) and runs every ctest
# label (unit, integration) on both builds.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

scripts/deps.sh --test

jobs=$(nproc)
run_suite() { # build-dir cmake-args...
  local dir=$1; shift
  cmake -S "$root" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
  cmake --build "$dir" -j"$jobs"
  (cd "$dir" && ctest --output-on-failure --timeout 600)
}

echo "== plain build"
run_suite build
echo "== ASan + UBSan build"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
run_suite build-asan -DSB_SANITIZE=ON
