#!/usr/bin/env bash
# Builds every libFuzzer target (tests/fuzz/fuzz_*.cpp) with clang-14 + AddressSanitizer in
# build-fuzz and runs each for a share of a bounded total time over its committed seed corpus
# tests/fuzz/corpus_<name>/ (<name>: the target without "fuzz_"; an empty or missing folder is first
# filled by the target itself when it can write seeds: UPG_FUZZ_SEED_DIR).
# Usage: tests/fuzz/run_fuzz.sh [TOTAL_SECONDS] [TARGET...]
#   TOTAL_SECONDS  shared by the targets run (default 120), at least 10 s each
#   TARGET         names (fuzz_safetensors or safetensors) to run only those; default: all
#   UPG_FUZZ_UPDATE_CORPUS=1  merge the inputs that found new coverage into the corpus folders
#                             (libFuzzer -merge=1 keeps only inputs adding coverage; keep them small)
# A crash, an ASan report, a leak, a timeout or an escaped exception other than upg::Error fails the
# script at the first failing target, naming it; the input is saved under build-fuzz/artifacts/NAME/
# (reproduce: build-fuzz/fuzz_NAME FILE).
set -euo pipefail
cd "$(dirname "$0")/../.."
TOTAL="${1:-120}"
shift || true
BUILD=build-fuzz
if [ "$#" -gt 0 ]; then
  targets=()
  for t in "$@"; do targets+=("fuzz_${t#fuzz_}"); done
else
  targets=()
  for f in tests/fuzz/fuzz_*.cpp; do targets+=("$(basename "$f" .cpp)"); done
fi
n=${#targets[@]}
per=$(( TOTAL / n ))
[ "$per" -lt 10 ] && per=10

CC=clang-14 CXX=clang++-14 cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DUPG_FUZZ=ON \
  -DUPG_NATIVE=OFF >/dev/null
jobs="${UPG_FUZZ_JOBS:-$(nproc)}"
cmake --build "$BUILD" --target "${targets[@]}" -j "$jobs"

# Largest input per target: big enough for its formats, small enough to keep runs fast.
max_len() {
  case "$1" in
    fuzz_tokenizer_json|fuzz_gguf_vocab) echo 16384 ;;
    fuzz_chat_template|fuzz_tokenizer_config) echo 8192 ;;
    *) echo 4096 ;;
  esac
}

NEW=$(mktemp -d)
trap 'rm -rf "$NEW"' EXIT
echo "run_fuzz: ${n} targets, ${per} s each"
for t in "${targets[@]}"; do
  name="${t#fuzz_}"
  corpus="tests/fuzz/corpus_${name}"
  art="$BUILD/artifacts/${name}/"
  mkdir -p "$corpus" "$art" "$NEW/$name"
  if [ -z "$(ls -A "$corpus")" ]; then
    UPG_FUZZ_SEED_DIR="$corpus" "$BUILD/$t" -runs=0 "$corpus" >/dev/null 2>&1 || true
  fi
  dict=()
  [ -f "tests/fuzz/${name}.dict" ] && dict=(-dict="tests/fuzz/${name}.dict")
  status=0
  ASAN_OPTIONS="detect_leaks=1:allocator_may_return_null=1" "$BUILD/$t" "$NEW/$name" "$corpus" "${dict[@]}" \
    -max_total_time="$per" -max_len="$(max_len "$t")" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$art" >"$BUILD/$t.log" 2>&1 || status=$?
  if [ "$status" -ne 0 ]; then
    grep -v '^#[0-9]' "$BUILD/$t.log" | tail -n 60
    latest=$(ls -t "$art" 2>/dev/null | head -n 1 || true)
    echo "run_fuzz: $t FAILED (exit $status); input: ${art}${latest:-?} (reproduce: $BUILD/$t ${art}${latest:-FILE}); log: $BUILD/$t.log" >&2
    exit "$status"
  fi
  echo "run_fuzz: $t ok: $(grep -E '^stat::number_of_executed_units' "$BUILD/$t.log" | awk '{print $2}') runs, $(grep -E '^stat::peak_rss_mb' "$BUILD/$t.log" | awk '{print $2}') MB peak"
  if [ "${UPG_FUZZ_UPDATE_CORPUS:-0}" = "1" ]; then
    "$BUILD/$t" -merge=1 -max_len="$(max_len "$t")" "$corpus" "$NEW/$name" >/dev/null 2>&1
    echo "run_fuzz: $corpus now $(ls "$corpus" | wc -l) files, $(du -sh "$corpus" | cut -f1)"
  fi
done
echo "run_fuzz: no problem found (${n} targets, ${per} s each)"
