#!/usr/bin/env bash
# On a GPU machine (the lent one has nvcc, cmake, ninja, compute-sanitizer, but not the Debian -dev
# packages of the full build): builds the CUDA kernels, test_cuda_kernels and bench_cuda_gemv with the
# standalone CMake project bench/cuda/standalone, then runs the test, compute-sanitizer (memcheck on
# the whole test, racecheck and synccheck on a subset) and the benchmark. Logs go to OUT_DIR.
# DEPS_DIR holds nlohmann/json.hpp and googletest/ (copy them from a Debian machine first:
#   mkdir -p .gpu_deps && cp -r /usr/include/nlohmann .gpu_deps/ && cp -r /usr/src/googletest .gpu_deps/
# with /.gpu_deps/ in .git/info/exclude, and carry .gpu_deps with the run).
# Usage: bench/cuda/run_on_gpu.sh [DEPS_DIR=.gpu_deps] [OUT_DIR=/tmp/upg-gpu-out] [BENCH_REPS=200]
set -uo pipefail
cd "$(dirname "$0")/../.."
DEPS="$(cd "${1:-.gpu_deps}" && pwd)"
OUT="${2:-/tmp/upg-gpu-out}"
REPS="${3:-200}"
mkdir -p "$OUT"
export PATH="$PATH:/usr/local/cuda/bin"
B=/tmp/upg-cuda-build
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1; head -12 "$OUT/nvidia-smi.txt"
nvcc --version | tail -2
start=$(date +%s)
if ! { cmake -S bench/cuda/standalone -B $B -G Ninja -DUPG_DEPS="$DEPS" && cmake --build $B -j "$(nproc)"; } > "$OUT/build.log" 2>&1; then
  tail -40 "$OUT/build.log"; echo "BUILD FAILED"; exit 1
fi
echo "build: $(( $(date +%s) - start )) s"
echo "=== test_cuda_kernels"
$B/test_cuda_kernels > "$OUT/test.log" 2>&1; echo "exit $?"; grep -E "^\[ *(OK|FAILED|PASSED|SKIPPED) |Failure|want" "$OUT/test.log" | head -40
echo "=== compute-sanitizer memcheck (all tests)"
timeout 240 compute-sanitizer --tool memcheck --leak-check full $B/test_cuda_kernels > "$OUT/memcheck.log" 2>&1; echo "exit $?"; tail -4 "$OUT/memcheck.log"
echo "=== compute-sanitizer racecheck + synccheck (subset)"
F='CudaGemm.CodebookShapesAndBlocks:CudaOps.*:CudaAttention.*'
timeout 120 compute-sanitizer --tool racecheck --racecheck-report all $B/test_cuda_kernels --gtest_filter="$F" > "$OUT/racecheck.log" 2>&1; echo "exit $?"; tail -3 "$OUT/racecheck.log"
timeout 90 compute-sanitizer --tool synccheck $B/test_cuda_kernels --gtest_filter="$F" > "$OUT/synccheck.log" 2>&1; echo "exit $?"; tail -3 "$OUT/synccheck.log"
echo "=== bench_cuda_gemv"
$B/bench_cuda_gemv "$REPS" 2>&1 | tee "$OUT/bench.txt"
