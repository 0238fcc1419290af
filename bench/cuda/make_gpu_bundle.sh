#!/usr/bin/env bash
# Packs what bench/cuda/run_engine_on_gpu.sh runs on the GPU machine: upg, test_cuda_kernels,
# test_cuda_engine and bench_cuda_gemv from BUILD_DIR with every shared library they load (and the dynamic loader), refA
# and the Phi-4 config from ../shared/data, into OUT (a .tar.xz). A device run carries 64 MiB with the
# working tree, too little for refA's 52 MB of bf16: refA travels as a 4-bit codebook UPG file
# (14 MB) that the GPU machine decompresses back to a bf16 Hugging Face directory ("refA after a
# 4-bit round trip": a trained model's weights, the test's CPU/GPU comparison unchanged).
# Usage: bench/cuda/make_gpu_bundle.sh [BUILD_DIR=build] [OUT=.gpu_run/bundle.tar.xz]
set -euo pipefail
cd "$(dirname "$0")/../.."
B="${1:-build}"; OUT="${2:-.gpu_run/bundle.tar.xz}"
D=$(mktemp -d); G="$D/gb"; mkdir -p "$G/lib" "$(dirname "$OUT")"
# cuBLAS is not carried (600 MB): the GPU machine's toolkit has it (run_engine_on_gpu.sh puts it on
# the library path); upg opens it at run time, bench_cuda_gemv links it.
for b in upg test_cuda_kernels test_cuda_engine bench_cuda_gemv; do
  cp "$B/$b" "$G/" && strip --strip-unneeded "$G/$b"  # the device run's carry is limited to 64 MiB
  ldd "$B/$b" | awk '/=> \// {print $3}' | grep -v libcublas | xargs -r -I{} cp -Ln {} "$G/lib/"
done
cp -L /lib64/ld-linux-x86-64.so.2 "$G/lib/"
"$B/upg" convert ../shared/data/models/refA-phi3-26m -o "$G/refA-cb4.upg" --codec codebook:bits=4,group=64 --no-gptq
cp ../shared/data/configs/microsoft_phi-4.config.json "$G/"
tar -C "$D" -cf - gb | xz -9e -T2 > "$OUT.tmp" && mv "$OUT.tmp" "$OUT"
rm -rf "$D"
ls -la "$OUT"
