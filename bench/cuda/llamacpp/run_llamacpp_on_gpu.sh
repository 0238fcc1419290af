#!/usr/bin/env bash
# On the lent GPU machine: llama.cpp b4747's llama-bench (CUDA, sm_90, built on the Debian 12 build
# machine) on random-weight GGUFs of Microsoft Phi-4's shape (llama.cpp "phi3" architecture), one per
# quantized type, every 2-D weight in that type. The GGUFs are written here by make_random_gguf.py
# (numpy + the bundled gguf-py), one at a time into $GGUF_DIR and deleted after its bench. A tiny
# GGUF is benched first: the run stops unless llama-bench finds a CUDA device (it would silently
# fall back to the CPU). Expected: about 2-4 minutes in all (each Phi-4 GGUF is 4.5-7.7 GiB).
# The bundle's own loader and glibc/libstdc++ are used (the host's glibc may be older than Debian
# 12's); libcuda is the host driver's, cuBLAS and the CUDA runtime the host toolkit's (a copy of
# libcudart.so.13 rides in lib-fallback/, last on the path, for a host without it).
# Usage: [TYPES="Q3_K IQ3_XXS Q4_K Q2_K"] [FA0_TYPE=Q3_K] [LIMIT_S=360] [BENCH_TIMEOUT_S=200]
#        [GGUF_DIR=/dev/shm or /tmp] [CONFIG=tiny.config.json ALLOW_CPU=1: a test without a GPU]
#        run_llamacpp_on_gpu.sh BUNDLE.tar.xz OUT_DIR
# Writes OUT_DIR/llamacpp_<type>.md (llama-bench's markdown), llamacpp_<type>.log (its stderr),
# gguf_<type>.txt (the writer's report: size, bits per weight, time), gpu.txt, ldd.txt, summary.md.
set -uo pipefail
BUNDLE="$1"; OUT="$2"
TYPES="${TYPES:-Q3_K IQ3_XXS Q4_K Q2_K}"   # the 3-bit ones first: closest to UPG's 3.2 bpw
FA0_TYPE="${FA0_TYPE:-Q3_K}"              # this type is benched with -fa 1,0 (the others -fa 1)
LIMIT_S="${LIMIT_S:-360}"                 # a type is skipped when its predicted end is past this
# the GGUFs go to tmpfs when it has room (faster than a disk; the 128 GiB host has RAM to spare)
if [ -z "${GGUF_DIR:-}" ]; then
  GGUF_DIR=/tmp
  shm_free=$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 {print int($4 / 1048576)}')
  [ "${shm_free:-0}" -ge 16 ] && GGUF_DIR=/dev/shm
fi
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
T0=$(date +%s.%N)
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
elapsed() { awk -v a="$T0" -v b="$(now)" 'BEGIN { printf "%d", b - a }'; }

echo "=== unpack $BUNDLE"
t=$(now)
rm -rf /tmp/lb
python3 -c "import tarfile,sys; tarfile.open(sys.argv[1]).extractall('/tmp')" "$BUNDLE" 2> /dev/null ||
  tar -C /tmp -xJf "$BUNDLE" || exit 1
G=/tmp/lb
echo "unpacked in $(since "$t") s"; cat "$G/BUILDINFO.txt" 2>/dev/null | head -20

HOSTLIBS=$(ldconfig -p 2>/dev/null | awk '/libcuda.so.1/ {print $NF}' | head -1 | xargs -r dirname)
CUDALIB=$(ls -d /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib 2>/dev/null | head -1)
LP="$G/lib:${HOSTLIBS:-/usr/lib/x86_64-linux-gnu}:${CUDALIB:+$CUDALIB:}${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$G/lib-fallback"
run() { "$G/lib/ld-linux-x86-64.so.2" --library-path "$LP" "$@"; }

echo "=== host"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem,power.limit --format=csv | tee "$OUT/gpu.txt"
nvidia-smi | head -15 >> "$OUT/gpu.txt"
ldd --version | head -1; nproc; free -g | head -2; df -h "$GGUF_DIR" | tail -1
PY=python3  # the first Python 3 that has numpy
for p in python3 /usr/bin/python3 /usr/local/bin/python3 /opt/conda/bin/python3; do
  if command -v "$p" > /dev/null && "$p" -c "import numpy" 2> /dev/null; then PY="$p"; break; fi
done
"$PY" -c "import sys, numpy; print(sys.executable, sys.version.split()[0], 'numpy', numpy.__version__)"
ls ${CUDALIB:-/nonexistent}/libcublas.so* ${CUDALIB:-/nonexistent}/libcudart.so* 2>&1 | head -6
echo "libcuda dir: ${HOSTLIBS:-not found by ldconfig}"
run --list "$G/llama-bench" > "$OUT/ldd.txt" 2>&1; grep -E "cuda|cublas|not found" "$OUT/ldd.txt"

echo "=== smoke test: a tiny random GGUF must run on the GPU (else llama-bench would fall back to the CPU)"
t=$(now)
"$PY" "$G/make_random_gguf.py" --config "$G/tiny.config.json" --type Q4_K -o "$GGUF_DIR/tiny-random-Q4_K.gguf" > /dev/null &&
  timeout 60 "$G/lib/ld-linux-x86-64.so.2" --library-path "$LP" "$G/llama-bench" -m "$GGUF_DIR/tiny-random-Q4_K.gguf" \
    -ngl 99 -p 16 -n 4 -r 1 -o md > "$OUT/smoke.md" 2> "$OUT/smoke.log"
echo "exit $? in $(since "$t") s"; rm -f "$GGUF_DIR/tiny-random-Q4_K.gguf"
grep -E "ggml_cuda_init|Device [0-9]" "$OUT/smoke.log"; grep -E "^\| phi3" "$OUT/smoke.md"
if ! grep -q "ggml_cuda_init: found [1-9]" "$OUT/smoke.log" && [ -z "${ALLOW_CPU:-}" ]; then
  echo "no CUDA device found by llama-bench: stopping (see $OUT/smoke.log)"; tail -20 "$OUT/smoke.log"; exit 1
fi

CFG="${CONFIG:-$G/microsoft_phi-4.config.json}"   # CONFIG: another HF config (tests)
# bits per weight of a Phi-4-shaped file of each type (measured on the build machine)
bpw_of() { case "$1" in Q8_0) echo 8.52;; Q6_K) echo 6.57;; Q5_K) echo 5.52;; Q4_K) echo 4.50;; IQ4_XS) echo 4.27;;
  Q4_0) echo 4.52;; Q3_K) echo 3.44;; IQ3_XXS) echo 3.07;; Q2_K) echo 2.63;; *) echo 8;; esac; }
GIBPS=""; BENCH_S=0; NPAR=14.66e9  # the previous type's write speed, bench time and parameter count
for ty in $TYPES; do
  if [ -n "$GIBPS" ]; then
    pred=$(awk -v e="$(elapsed)" -v b="$(bpw_of "$ty")" -v r="$GIBPS" -v bs="$BENCH_S" -v np="$NPAR" \
      'BEGIN { printf "%d", e + np * b / 8 / 2^30 / r + bs * 1.3 + 5 }')
    if [ "$pred" -gt "$LIMIT_S" ]; then
      echo "=== $ty skipped: predicted to end at $pred s > LIMIT_S=$LIMIT_S"; continue
    fi
  fi
  F="$GGUF_DIR/phi4-random-$ty.gguf"
  echo "=== $ty: write $F"
  t=$(now)
  "$PY" "$G/make_random_gguf.py" --config "$CFG" --type "$ty" -o "$F" 2>&1 | tee "$OUT/gguf_$ty.txt"
  ws=$(since "$t"); echo "written in $ws s"
  if [ ! -s "$F" ]; then echo "no GGUF written for $ty"; continue; fi
  NPAR=$(grep -o "parameters [0-9,]*" "$OUT/gguf_$ty.txt" | tr -dc '0-9'); NPAR=${NPAR:-14.66e9}
  GIBPS=$(awk -v n="$(stat -c %s "$F")" -v s="$ws" 'BEGIN { r = n / 2^30 / (s > 0.1 ? s : 0.1); printf "%.3f", r }')
  FA=1; [ "$ty" = "$FA0_TYPE" ] && FA=1,0
  echo "=== $ty: llama-bench -m $F -ngl 99 -fa $FA -p 512 -n 128 -r 3 -o md"
  t=$(now)
  timeout "${BENCH_TIMEOUT_S:-200}" "$G/lib/ld-linux-x86-64.so.2" --library-path "$LP" "$G/llama-bench" -m "$F" -ngl 99 -fa "$FA" -p 512 -n 128 -r 3 -o md -v \
    > "$OUT/llamacpp_$ty.md" 2> "$OUT/llamacpp_$ty.log"
  rc=$?
  cat "$OUT/llamacpp_$ty.md"
  BENCH_S=$(since "$t"); echo "llama-bench exit $rc in $BENCH_S s"
  [ "$FA" = "1,0" ] && BENCH_S=$(awk -v b="$BENCH_S" 'BEGIN { print b / 1.6 }')  # the others run -fa 1 only
  grep -E "offloaded" "$OUT/llamacpp_$ty.log" | head -1
  [ $rc -ne 0 ] && tail -15 "$OUT/llamacpp_$ty.log"
  rm -f "$F"
done

{
  echo "llama.cpp b4747 (CUDA, sm_90) llama-bench on random-weight Phi-4-shaped GGUFs, all 2-D weights in one type"
  echo "GPU: $(tail -n +2 "$OUT/gpu.txt" | head -1)"
  echo
  first=1
  for ty in $TYPES; do
    [ -s "$OUT/llamacpp_$ty.md" ] || continue
    if [ $first = 1 ]; then grep -E "^\| model|^\| ---" "$OUT/llamacpp_$ty.md"; first=0; fi
    grep -E "^\| phi3" "$OUT/llamacpp_$ty.md"
  done
  echo
  for ty in $TYPES; do
    [ -s "$OUT/gguf_$ty.txt" ] && echo "$ty:$(grep -h "bits per weight" "$OUT/gguf_$ty.txt" | sed 's/^ *tensors [0-9]*,//')"
  done
} > "$OUT/summary.md"
echo "=== summary"; cat "$OUT/summary.md"
echo "=== total $(since "$T0") s"
