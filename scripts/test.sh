#!/usr/bin/env bash
# Builds UPG and runs the whole test suite (what CI runs, through .ci/run):
#   1. Release build, every test (unit, golden, end-to-end scripts, full-text perplexity): gating.
#      Then the Python package: `pip install ./python` into a fresh virtual environment (Debian's
#      python3 with --system-site-packages; the extension is built in build/), and its tests
#      (python/tests: API, against `upg run`/`upg eval`/the goldens, `cmake --install`, the .debs): gating.
#   2. The unit tests again under AddressSanitizer + UndefinedBehaviorSanitizer (-O1 -g1): gating.
#      UPG_SANITIZE_TIMEOUT (default 2400 s) bounds it; running past that fails the run.
#   3. Every libFuzzer target (tests/fuzz/fuzz_*.cpp: UPG and safetensors headers, config.json,
#      tokenizer files, chat templates, GGUF vocabularies, server requests, ...) for a bounded time
#      shared between them, UPG_FUZZ_SECONDS (default 120): gating.
# Tests that need ../shared/data skip with a message when it is absent; CI has it.
# UPG_SKIP_SANITIZE=1 / UPG_SKIP_FUZZ=1 skip steps 2 / 3.
set -euo pipefail
cd "$(dirname "$0")/.."
UPG_TEST_DEPS=1 scripts/setup.sh build
# One OpenMP thread per test and two tests at a time: no oversubscription on small machines.
OMP_NUM_THREADS=1 ctest --test-dir build --output-on-failure -j "$(nproc)" --timeout 3600
# The Python package, installed the way the README says, then tested from outside the source tree.
root=$PWD
venv=$(mktemp -d /tmp/upg-venv.XXXXXX)
trap 'rm -rf "$venv"' EXIT
/usr/bin/python3 -m venv --system-site-packages "$venv"
UPG_BUILD_DIR="$root/build" "$venv/bin/pip" install --quiet --no-build-isolation --no-index ./python
(cd "$venv" && UPG_BUILD_DIR="$root/build" UPG_BIN="$root/build/upg" \
   "$venv/bin/python" -m pytest -q -p no:cacheprovider "$root/python/tests")
if [ "${UPG_SKIP_SANITIZE:-0}" != "1" ]; then
  san=0
  # Only the unit tests the pass runs (not the slow ones, the tool, benchmarks or the fuzzer).
  targets=""
  for f in tests/unit/test_*.cpp; do
    t=$(basename "$f" .cpp)
    case "$t" in *_slow) ;; *) targets="$targets $t" ;; esac
  done
  export UPG_TARGETS="$targets"
  timeout "${UPG_SANITIZE_TIMEOUT:-2400}" bash -c '
    UPG_SANITIZE=ON UPG_BUILD_TYPE=Debug scripts/setup.sh build-asan &&
    ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 OMP_NUM_THREADS=1 \
      ctest --test-dir build-asan --output-on-failure -j "$(nproc)" --timeout 1200 -LE "slow|script" -E "_NOT_BUILT"' || san=$?
  if [ "$san" -ne 0 ]; then
    echo "=================================================================="
    echo "SANITIZER PASS FAILED OR TIMED OUT (exit $san): see the output above"
    echo "=================================================================="
    exit "$san"
  fi
fi
if [ "${UPG_SKIP_FUZZ:-0}" != "1" ]; then
  tests/fuzz/run_fuzz.sh "${UPG_FUZZ_SECONDS:-120}"
fi
