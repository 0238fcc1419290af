#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/fuzz_*.cpp) with clang-14 + AddressSanitizer in build-fuzz
# and runs fuzz_upg_header for a bounded time over the committed corpus tests/fuzz/corpus/.
# Usage: tests/fuzz/run_fuzz.sh [SECONDS]   (default 60)
#   UPG_FUZZ_UPDATE_CORPUS=1  merge the inputs that found new coverage into tests/fuzz/corpus/
#                             (libFuzzer -merge=1 keeps only inputs adding coverage; keep it small)
# A crash, an ASan report, a leak or an escaped non-upg::Error exception fails the script; the input
# is saved under build-fuzz/artifacts/ (reproduce: build-fuzz/fuzz_upg_header FILE).
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS="${1:-60}"
BUILD=build-fuzz
CORPUS=tests/fuzz/corpus
CC=clang-14 CXX=clang++-14 cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DUPG_FUZZ=ON \
  -DUPG_NATIVE=OFF >/dev/null
cmake --build "$BUILD" --target fuzz_upg_header -j "$(nproc)"
mkdir -p "$CORPUS" "$BUILD/artifacts"
if [ -z "$(ls -A "$CORPUS")" ]; then
  # Seeds: small valid files of every codec and an index (written by the target itself).
  UPG_FUZZ_SEED_DIR="$CORPUS" "$BUILD/fuzz_upg_header" -runs=0 "$CORPUS" >/dev/null 2>&1
fi
NEW=$(mktemp -d)
trap 'rm -rf "$NEW"' EXIT
status=0
ASAN_OPTIONS="detect_leaks=1:allocator_may_return_null=1" "$BUILD/fuzz_upg_header" "$NEW" "$CORPUS" \
  -max_total_time="$SECS" -max_len=4096 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="$BUILD/artifacts/" >"$BUILD/fuzz.log" 2>&1 || status=$?
grep -v '^#[0-9]' "$BUILD/fuzz.log" | tail -n 40
if [ "$status" -ne 0 ]; then
  echo "run_fuzz: fuzz_upg_header failed (exit $status); inputs in $BUILD/artifacts/" >&2
  exit "$status"
fi
if [ "${UPG_FUZZ_UPDATE_CORPUS:-0}" = "1" ]; then
  "$BUILD/fuzz_upg_header" -merge=1 "$CORPUS" "$NEW" >/dev/null 2>&1
  echo "run_fuzz: corpus now $(ls "$CORPUS" | wc -l) files, $(du -sh "$CORPUS" | cut -f1)"
fi
echo "run_fuzz: no problem found in ${SECS} s"
