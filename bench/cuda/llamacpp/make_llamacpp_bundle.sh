#!/usr/bin/env bash
# Packs the llama.cpp CUDA llama-bench bundle for run_llamacpp_on_gpu.sh: the stripped binary, the
# non-CUDA shared libraries it loads (glibc, libstdc++, libgomp, libgcc_s) with the dynamic loader,
# libcudart.so.13 as a fallback only (lib-fallback/, last on the runner's path), gguf-py, the GGUF
# writer and the Phi-4 config. libcuda, cuBLAS and cuBLASLt are not carried: the host has them.
# Build llama.cpp first, in a scratch folder outside the repository (../shared/peers/README.md; about
# 10 minutes on 2 cores for this one target):
#   tar xJf ../shared/peers/llama.cpp-b4747.tar.xz -C /tmp/peer
#   cmake -S /tmp/peer/llama.cpp-b4747 -B /tmp/peer/build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF \
#     -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=ON -DGGML_CUDA=ON \
#     -DCMAKE_CUDA_ARCHITECTURES=90-real -DBUILD_SHARED_LIBS=OFF -DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc
#   cmake --build /tmp/peer/build-cuda -j2 --target llama-bench
# Usage: bench/cuda/llamacpp/make_llamacpp_bundle.sh LLAMA_SRC_DIR LLAMA_BUILD_DIR [OUT=.gpu_run/llamacpp.tar.xz]
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
SRC="$1"; BUILD="$2"
OUT="${3:-.gpu_run/llamacpp.tar.xz}"
BIN="$BUILD/bin/llama-bench"
D=$(mktemp -d); G="$D/lb"; mkdir -p "$G/lib" "$G/lib-fallback"
cp "$BIN" "$G/llama-bench" && strip --strip-unneeded "$G/llama-bench"
ldd "$BIN" | awk '/=> \// {print $3}' | while read -r lib; do
  case "$(basename "$lib")" in
    libcuda.so*|libcublas*) ;;                                   # the host's
    libcudart.so*) cp -Ln "$lib" "$G/lib-fallback/" ;;
    *) cp -Ln "$lib" "$G/lib/" ;;
  esac
done
# libcuda and cuBLAS (loaded from the host) need these; glibc 2.36 keeps them as small stubs
for l in libdl.so.2 libpthread.so.0 librt.so.1; do cp -Ln "/lib/x86_64-linux-gnu/$l" "$G/lib/"; done
cp -L /lib64/ld-linux-x86-64.so.2 "$G/lib/"
strip --strip-unneeded "$G"/lib/libstdc++.so.6 "$G"/lib/libgomp.so.1 "$G"/lib/libgcc_s.so.1 2>/dev/null || true
mkdir -p "$G/gguf-py" && cp -r "$SRC/gguf-py/gguf" "$G/gguf-py/" && rm -rf "$G/gguf-py/gguf/scripts"
cp "$SRC/LICENSE" "$G/LICENSE.llama.cpp"
cp "$HERE/make_random_gguf.py" "$HERE/run_llamacpp_on_gpu.sh" "$HERE/tiny.config.json" \
   "$HERE/../../../../shared/data/configs/microsoft_phi-4.config.json" "$G/"
{
  echo "llama.cpp b4747 llama-bench, CUDA $(/usr/local/cuda/bin/nvcc --version | grep -o 'release [0-9.]*'), sm_90 (90-real), built $(date -u +%F) on $(. /etc/os-release; echo "$PRETTY_NAME"), $(gcc --version | head -1)"
  echo "cmake: -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=ON -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90-real -DBUILD_SHARED_LIBS=OFF"
  echo "llama-bench sha256 (stripped): $(sha256sum "$G/llama-bench" | cut -c1-16)"
  echo "needs from the host: $(ldd "$BIN" | awk '/libcuda.so|libcublas|libcudart/ {print $1}' | tr '\n' ' ')"
} > "$G/BUILDINFO.txt"
ls -la "$G" "$G/lib" "$G/lib-fallback"
du -sh "$G"
mkdir -p "$(dirname "$OUT")"
tar -C "$D" --owner=0 --group=0 -cf - lb | nice -n 10 xz -9e -T1 > "$OUT.tmp" && mv "$OUT.tmp" "$OUT"
rm -rf "$D"
ls -la "$OUT"
