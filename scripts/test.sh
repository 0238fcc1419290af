#!/usr/bin/env bash
# Builds UPG and runs the whole test suite: the Release build, then the same suite under
# AddressSanitizer + UndefinedBehaviorSanitizer (set UPG_SKIP_SANITIZE=1 to skip that pass).
# Tests that need ../shared/data skip with a message when it is absent; CI has it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh build
ctest --test-dir build --output-on-failure -j "$(nproc)" --timeout 3600
if [ "${UPG_SKIP_SANITIZE:-0}" != "1" ]; then
  UPG_SANITIZE=ON UPG_BUILD_TYPE=RelWithDebInfo scripts/setup.sh build-asan
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir build-asan --output-on-failure -j "$(nproc)" --timeout 1800 -LE "slow|script"
fi
# Last: fuzz the UPG header/index parsers for a bounded time (clang-14 + libFuzzer; UPG_SKIP_FUZZ=1 skips).
if [ "${UPG_SKIP_FUZZ:-0}" != "1" ]; then
  tests/fuzz/run_fuzz.sh "${UPG_FUZZ_SECONDS:-60}"
fi
