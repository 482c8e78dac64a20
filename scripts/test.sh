#!/usr/bin/env bash
# The whole test suite: installs what is missing, then
#   build/        plain build: every label (unit, integration, package: the
#                 .deb built, installed as root, run and purged)
#   build-asan/   AddressSanitizer + UndefinedBehaviorSanitizer: every label but
#                 package
#   build-fuzz/   clang + libFuzzer: every parser fuzzed for a short while
#                 (longer runs: tests/fuzz/README.md)
#   build-tsan/   ThreadSanitizer: the suites that cross the intake/loop
#                 hand-over, the MQTT thread and the broker thread (both forms)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

scripts/deps.sh --test
# The browser tests drive Debian's Chromium with playwright-core (Node.js 20
# or later, as this machine has; Debian 12's own nodejs 18 is too old).
if ! command -v npm >/dev/null; then
  echo "npm not found: installing Debian's nodejs and npm (the browser tests want Node.js 20+)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm
fi
npm ci --prefix tests/browser --no-audit --no-fund
# The npm package of the browser client: TypeScript for its type check (the
# packaging test installs its Vite fixture itself, from that fixture's lockfile).
npm ci --prefix clients/js --no-audit --no-fund

jobs=$(nproc)
run_suite() { # build-dir cmake-args...
  local dir=$1; shift
  cmake -S "$root" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
  cmake --build "$dir" -j"$jobs"
  (cd "$dir" && ctest --output-on-failure --timeout 600 -j"$jobs" "${ctest_args[@]}")
}
ctest_args=()

echo "== plain build"
run_suite build
echo "== ASan + UBSan build"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# Run once, in the plain build: the package test (label package: builds,
# installs and purges the .deb on this machine); what has no C of its own
# (the JS package checks, the SvelteKit example, the client libraries' unit
# and install tests); and the broker-cluster suites (fault_scale,
# fault_cluster: RabbitMQ nodes and bridged brokers, slow, and what they
# prove is the brokers' interplay, which the sanitizers do not watch).
ctest_args=(-LE package
            -E '^(js_|example_|clients_(js|python)_(unit|install)$|integration_fault_(scale|cluster)_)')
run_suite build-asan -DSB_SANITIZE=ON
echo "== libFuzzer targets (clang), ${SB_FUZZ_SECONDS:-20} s each"
CC=clang cmake -S "$root" -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSB_FUZZ=ON >/dev/null
cmake --build build-fuzz -j"$jobs"
(cd build-fuzz && ctest -L fuzz --output-on-failure --timeout 600)
echo "== TSan build"
unset ASAN_OPTIONS
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=0:second_deadlock_stack=1}
ctest_args=(-R '^(integration_(delivery|replay|resilience|hostile|auth|presence|journal|reload|publish|fault_restart)_|unit_source$)')
run_suite build-tsan -DSB_TSAN=ON
