#!/usr/bin/env bash
# On the lent GPU machine, which lacks the Debian libraries of the full build: runs binaries built on
# the Debian build machine (with nvcc there) from a bundle made by bench/cuda/make_gpu_bundle.sh:
# test_cuda_kernels and test_cuda_engine (GPU against CPU; refA from the bundle); `upg synth` of the
# Phi-4 shape at 3.2 bpw (codebook, and trellis) and `upg bench --device cuda` (also without CUDA graphs, and with the
# earlier GEMV launch rules); bench_cuda_gemv; then compute-sanitizer memcheck on part of both tests.
# The bundle's own loader and libraries are used (the host's glibc may be older than Debian 12's).
# Usage: [SKIP_TESTS=1] bench/cuda/run_engine_on_gpu.sh BUNDLE.tar.xz OUT_DIR
set -uo pipefail
BUNDLE="$1"; OUT="$2"
mkdir -p "$OUT" /tmp/gb
cd "$(dirname "$0")/../.."
/usr/bin/env python3 -c "import tarfile,sys; tarfile.open(sys.argv[1]).extractall('/tmp')" "$BUNDLE" || exit 1
G=/tmp/gb
HOSTLIBS=$(ldconfig -p 2>/dev/null | awk '/libcuda.so.1/ {print $NF}' | head -1 | xargs -r dirname)
# cuBLAS (opened at run time by the prompt GEMM) is the host's: the toolkit's, not carried (600 MB).
CUBLAS=$(ls -d /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib 2>/dev/null | head -1)
LP="$G/lib:${HOSTLIBS:-/usr/lib/x86_64-linux-gnu}:${CUBLAS:+$CUBLAS:}${LD_LIBRARY_PATH:-}"
ls ${CUBLAS:-/nonexistent}/libcublas* 2>&1 | head -4
run() { "$G/lib/ld-linux-x86-64.so.2" --library-path "$LP" "$@"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
ldd --version | head -1
run "$G/upg" decompress "$G/refA-cb4.upg" -o "$G/refA" > "$OUT/decompress.log" 2>&1 || tail -3 "$OUT/decompress.log"
export UPG_SOURCE_DIR="$PWD" UPG_REFA_DIR="$G/refA"
if [ -z "${SKIP_TESTS:-}" ]; then  # SKIP_TESTS=1: the benchmarks only
echo "=== test_cuda_kernels"; run "$G/test_cuda_kernels" > "$OUT/test_cuda_kernels.log" 2>&1; echo "exit $?"
grep -E "^\[  (PASSED|FAILED|  SKIPPED) |Failure" "$OUT/test_cuda_kernels.log" | head
echo "=== test_cuda_engine"; run "$G/test_cuda_engine" > "$OUT/test_cuda_engine.log" 2>&1; echo "exit $?"
grep -E "^\[ *(OK|FAILED|PASSED|SKIPPED) |Failure|max rel err|on the GPU|error" "$OUT/test_cuda_engine.log" | head -60
fi
echo "=== synth phi-4 3.2 bpw"
t0=$(date +%s); run "$G/upg" synth --config "$G/microsoft_phi-4.config.json" --bpw 3.2 -o /tmp/phi4-3.2.upg > "$OUT/synth.log" 2>&1
echo "exit $? in $(( $(date +%s) - t0 )) s"; tail -2 "$OUT/synth.log"
echo "=== upg bench --device cuda"
run "$G/upg" bench /tmp/phi4-3.2.upg --device cuda -p 512 -n 128 -b 1,4,16 -r ${REPS:-3} 2>&1 | tee "$OUT/bench_phi4.md"
echo "=== synth phi-4 with the trellis codec (3 bits, group 512, rotated), upg bench --device cuda"
run "$G/upg" synth --config "$G/microsoft_phi-4.config.json" --bpw 3.2 --codec trellis -o /tmp/phi4-trellis3.upg > "$OUT/synth_trellis.log" 2>&1
echo "exit $?"; tail -1 "$OUT/synth_trellis.log"
run "$G/upg" bench /tmp/phi4-trellis3.upg --device cuda -p 512 -n 128 -b 1,4,16 -r ${REPS:-3} 2>&1 | tee "$OUT/bench_phi4_trellis3.md"
rm -f /tmp/phi4-trellis3.upg
echo "=== decode without CUDA graphs (UPG_CUDA_GRAPHS=0), then graph nodes per recorded step"
[ -z "${SKIP_LONG:-}" ] && UPG_CUDA_GRAPHS=0 run "$G/upg" bench /tmp/phi4-3.2.upg --device cuda -p 0 -n 128 -b 1 -r 2 2>&1 | tee "$OUT/bench_phi4_nographs.md"
UPG_CUDA_VERBOSE=1 run "$G/upg" bench /tmp/phi4-3.2.upg --device cuda -p 0 -n 16 -b 1,16 -r 1 2>&1 | grep -E "recorded|tg" | tee "$OUT/graph_nodes.txt"
[ -z "${SKIP_LONG:-}" ] && echo "=== a 4,096-token context (memory)" &&
run "$G/upg" bench /tmp/phi4-3.2.upg --device cuda -p 0 -n 32 -b 1 -r 1 -d 4096 2>&1 | tee "$OUT/bench_phi4_d4096.md"
if command -v nsys > /dev/null; then
  echo "=== nsys: where a decode step's time goes"
  nsys profile -o /tmp/upg-decode --force-overwrite true --stats=false "$G/lib/ld-linux-x86-64.so.2" --library-path "$LP" \
    "$G/upg" bench /tmp/phi4-3.2.upg --device cuda -p 0 -n 64 -b 1 -r 1 > "$OUT/nsys.log" 2>&1 || tail -5 "$OUT/nsys.log"
  nsys stats --report cuda_gpu_kern_sum,cuda_api_sum --format csv -o "$OUT/nsys" /tmp/upg-decode.nsys-rep >> "$OUT/nsys.log" 2>&1
  ls "$OUT"/nsys* ; head -25 "$OUT"/nsys_cuda_gpu_kern_sum.csv 2>/dev/null
fi
echo "=== decode with the earlier GEMV rules (a barrier per tile, blocks for about two waves)"
for v in "UPG_CUDA_GEMV_FLUSH=1 UPG_CUDA_GEMV_TPB=0"; do
  echo "$v:"; env $v "$G/lib/ld-linux-x86-64.so.2" --library-path "$LP" "$G/upg" bench /tmp/phi4-3.2.upg --device cuda -p 0 -n 128 -b 1 -r 2 2>&1 | grep tg128
done | tee "$OUT/bench_phi4_gemv_variants.md"
if [ -z "${SKIP_EXTRA:-}" ]; then  # SKIP_EXTRA=1: no GEMV microbenchmark, no variants, no sanitizer
echo "=== bench_cuda_gemv (the skinny GEMM alone, Phi-4 shapes)"
run "$G/bench_cuda_gemv" 200 2>&1 | tee "$OUT/bench_cuda_gemv.md" | tail -25
echo "=== with a barrier per tile (UPG_CUDA_GEMV_FLUSH=1), then also the earlier launch rule (UPG_CUDA_GEMV_TPB=0)"
UPG_CUDA_GEMV_FLUSH=1 UPG_CUDA_GEMV_TPB=0 run "$G/bench_cuda_gemv" 200 2>&1 | tee "$OUT/bench_cuda_gemv_old.md" | tail -22
if [ -z "${SKIP_TESTS:-}" ]; then
echo "=== compute-sanitizer memcheck (engine batch, graph and cache-cap tests; kernels' GEMM path)"
timeout 200 compute-sanitizer --tool memcheck "$G/lib/ld-linux-x86-64.so.2" --library-path "$LP" "$G/test_cuda_engine" \
  --gtest_filter='CudaEngine.BatchOfSequencesEqualsEachAlone:CudaEngine.KvCacheFullOnTheDeviceIsAnError:CudaEngine.RecordedStepsEqualStepsRunOpByOp' > "$OUT/memcheck.log" 2>&1
echo "exit $?"; tail -3 "$OUT/memcheck.log"
timeout 120 compute-sanitizer --tool memcheck "$G/lib/ld-linux-x86-64.so.2" --library-path "$LP" "$G/test_cuda_kernels" \
  --gtest_filter='CudaGemm.Int8:CudaGemm.DenseBf16F16F32:CudaGemm.CodebookShapesAndBlocks:CudaGemm.Trellis*' > "$OUT/memcheck_kernels.log" 2>&1
echo "exit $?"; tail -3 "$OUT/memcheck_kernels.log"
fi
fi
