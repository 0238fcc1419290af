#!/usr/bin/env bash
# Side-by-side CPU speed of llama.cpp (release b4747) and UPG at the TinyLlama-1.1B shape, with
# random weights (no model download). See bench/README_compare.md.
#
# usage: bench/compare_llama_cpp.sh [--upg BUILD/upg] [--scratch DIR] [--threads 2] [--quick]
#
# Progress goes to stderr, the markdown report to stdout and SCRATCH/report.md. Builds and
# quantizations run under `nice -n 19`, benchmarks at normal priority. Existing outputs are reused.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
UPG=$ROOT/build/upg
SCRATCH=/tmp/upg-llamacpp
THREADS=2
QUICK=0

usage() { sed -n '2,8s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }
while [[ $# -gt 0 ]]; do
  case $1 in
    --upg) UPG=$2; shift 2 ;;
    --upg=*) UPG=${1#*=}; shift ;;
    --scratch) SCRATCH=$2; shift 2 ;;
    --scratch=*) SCRATCH=${1#*=}; shift ;;
    -t|--threads) THREADS=$2; shift 2 ;;
    --threads=*) THREADS=${1#*=}; shift ;;
    --quick) QUICK=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "compare_llama_cpp.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
[[ $THREADS =~ ^[0-9]+$ && $THREADS -gt 0 ]] || { echo "--threads must be a positive integer" >&2; exit 2; }

LLAMA_TAG=b4747
TARBALL=$ROOT/../shared/peers/llama.cpp-$LLAMA_TAG.tar.xz
VOCAB_GGUF=$ROOT/../shared/data/tokenizers/llama.cpp-vectors/ggml-vocab-llama-spm.gguf
TEXT=$ROOT/../shared/data/text/wiki.test.raw
PY=/usr/bin/python3
NICE=(nice -n 19)

mkdir -p "$SCRATCH"
SCRATCH=$(cd "$SCRATCH" && pwd)
case $SCRATCH/ in "$ROOT"/*) echo "--scratch must be outside the repository ($ROOT)" >&2; exit 2 ;; esac
SRC=$SCRATCH/llama.cpp-$LLAMA_TAG
BIN=$SRC/build/bin
MODELS=$SCRATCH/models
LOGS=$SCRATCH/logs
REPORT=$SCRATCH/report.md
mkdir -p "$MODELS" "$LOGS"
[[ $UPG == /* ]] || UPG=$PWD/$UPG

log() { printf '[compare %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
# run a heavy command niced, its output in a log file; on failure show the log's tail
run_logged() {
  local logf=$1; shift
  if ! "${NICE[@]}" "$@" >"$logf" 2>&1; then
    log "FAILED: $* (log: $logf)"; tail -n 25 "$logf" >&2; return 1
  fi
}

if [[ $QUICK == 1 ]]; then
  QUANTS=(Q4_0); LB_ARGS=(-p 32 -n 8 -r 1)
  UPG_BPWS=(4.25); UPG_ARGS=(-p 32 -n 8 -b 1 -r 1)
else
  QUANTS=(Q2_K IQ3_XXS Q4_0 Q4_K_M); LB_ARGS=(-p 128 -n 32 -r 3)
  UPG_BPWS=(3.2 4.25); UPG_ARGS=(-p 128 -n 32 -b 1,4,16 -r 3)
fi

# ---------------------------------------------------------------------------------------------
# 1. llama.cpp b4747, CPU only (as ../shared/peers/README.md says)
# ---------------------------------------------------------------------------------------------
LLAMA_BINS=(llama-bench llama-quantize llama-imatrix)
have_bins() { local b; for b in "${LLAMA_BINS[@]}"; do [[ -x $BIN/$b ]] || return 1; done; }
if have_bins; then
  log "llama.cpp binaries already in $BIN, not rebuilding"
else
  [[ -f $TARBALL ]] || die "missing $TARBALL"
  command -v cmake >/dev/null && command -v ninja >/dev/null || die "need cmake and ninja (apt-get install cmake ninja-build)"
  if [[ ! -f $SRC/CMakeLists.txt ]]; then
    log "extracting $(basename "$TARBALL") into $SCRATCH"
    "${NICE[@]}" tar xJf "$TARBALL" -C "$SCRATCH"
  fi
  log "configuring llama.cpp (log: $LOGS/llama-cmake.log)"
  # GIT_CEILING_DIRECTORIES: the tarball has no .git; never pick up the commit of a repo around SCRATCH
  GIT_CEILING_DIRECTORIES=$SCRATCH run_logged "$LOGS/llama-cmake.log" \
    cmake -S "$SRC" -B "$SRC/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DLLAMA_CURL=OFF -DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF || die "cmake configure failed"
  log "building ${LLAMA_BINS[*]} with -j$THREADS (several minutes on 2 cores; log: $LOGS/llama-build.log)"
  GIT_CEILING_DIRECTORIES=$SCRATCH run_logged "$LOGS/llama-build.log" \
    cmake --build "$SRC/build" -j"$THREADS" --target "${LLAMA_BINS[@]}" || die "llama.cpp build failed"
  have_bins || die "build finished but binaries are missing in $BIN"
fi

# ---------------------------------------------------------------------------------------------
# 2. random-weight F16 GGUF of the TinyLlama-1.1B shape (gguf-py from the llama.cpp tree)
# ---------------------------------------------------------------------------------------------
if ! "$PY" -c 'import numpy, yaml, sentencepiece' 2>/dev/null; then
  log "installing python3-numpy python3-yaml python3-sentencepiece from Debian"
  SUDO=(); [[ $(id -u) == 0 ]] || SUDO=(sudo)
  "${SUDO[@]}" apt-get install -y python3-numpy python3-yaml python3-sentencepiece >"$LOGS/apt.log" 2>&1 ||
    { tail "$LOGS/apt.log" >&2; die "apt-get install failed (try apt-get update first)"; }
fi

# one Hugging Face config.json drives both the GGUF and `upg synth`
CONFIG=$SCRATCH/tinyllama-1.1b/config.json
mkdir -p "$(dirname "$CONFIG")"
cat >"$CONFIG" <<'EOF'
{
  "architectures": ["LlamaForCausalLM"],
  "model_type": "llama",
  "hidden_size": 2048,
  "intermediate_size": 5632,
  "num_hidden_layers": 22,
  "num_attention_heads": 32,
  "num_key_value_heads": 4,
  "head_dim": 64,
  "vocab_size": 32000,
  "max_position_embeddings": 2048,
  "rope_theta": 10000.0,
  "rms_norm_eps": 1e-05,
  "hidden_act": "silu",
  "attention_bias": false,
  "mlp_bias": false,
  "tie_word_embeddings": false,
  "bos_token_id": 1,
  "eos_token_id": 2,
  "torch_dtype": "bfloat16"
}
EOF

F16=$MODELS/tinyllama-random-F16.gguf
if [[ -s $F16 ]]; then
  log "$F16 exists"
else
  [[ -f $VOCAB_GGUF ]] || die "missing $VOCAB_GGUF"
  log "writing random F16 GGUF $F16 (2.2 GB)"
  PYTHONPATH=$SRC/gguf-py run_logged "$LOGS/make_gguf.log" "$PY" "$ROOT/bench/make_random_gguf.py" \
    --config "$CONFIG" --vocab-gguf "$VOCAB_GGUF" --name "TinyLlama-1.1B-shape random" -o "$F16.tmp" ||
    die "GGUF generation failed"
  mv "$F16.tmp" "$F16"
fi

# ---------------------------------------------------------------------------------------------
# 3. quantize (IQ3_XXS needs an importance matrix: llama-imatrix on ~20 KB of wiki text)
# ---------------------------------------------------------------------------------------------
IMATRIX=$MODELS/imatrix-wiki20k.dat
declare -A QSTATUS=()
make_imatrix() {
  [[ -s $IMATRIX ]] && return 0
  [[ -f $TEXT ]] || { log "missing $TEXT"; return 1; }
  head -c 20000 "$TEXT" >"$SCRATCH/imatrix-text.txt"
  log "llama-imatrix: 4 chunks of 128 tokens (log: $LOGS/imatrix.log)"
  run_logged "$LOGS/imatrix.log" "$BIN/llama-imatrix" -m "$F16" -f "$SCRATCH/imatrix-text.txt" \
    -o "$IMATRIX.tmp" -c 128 --chunks 4 -t "$THREADS" --no-ppl || return 1
  mv "$IMATRIX.tmp" "$IMATRIX"
}
for q in "${QUANTS[@]}"; do
  out=$MODELS/tinyllama-random-$q.gguf
  if [[ -s $out ]]; then log "$out exists"; QSTATUS[$q]=ok; continue; fi
  extra=()
  case $q in
    IQ1_*|IQ2_*|IQ3_XXS|IQ3_XS)
      if ! make_imatrix; then QSTATUS[$q]="no importance matrix (see $LOGS/imatrix.log)"; continue; fi
      extra=(--imatrix "$IMATRIX") ;;
  esac
  log "llama-quantize $q (log: $LOGS/quantize-$q.log)"
  t0=$SECONDS
  if run_logged "$LOGS/quantize-$q.log" "$BIN/llama-quantize" "${extra[@]}" "$F16" "$out.tmp" "$q" "$THREADS"; then
    mv "$out.tmp" "$out"; QSTATUS[$q]=ok; log "  $q done in $((SECONDS - t0)) s"
  else
    rm -f "$out.tmp"; QSTATUS[$q]="llama-quantize failed (see $LOGS/quantize-$q.log)"
  fi
done

# ---------------------------------------------------------------------------------------------
# report header
# ---------------------------------------------------------------------------------------------
cpu_model=$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n1)
cpu_flags=$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|avx512.*|avx_vnni|amx.*|fma|f16c)$' | tr '\n' ' ' || true)
n_cpus=$(nproc --all); n_avail=$(nproc)
mem_gib=$(awk '/^MemTotal/ {printf "%.0f", $2/1048576}' /proc/meminfo)
build_info=$(sed -n 's/.*LLAMA_BUILD_NUMBER = \(.*\);/\1/p; s/.*LLAMA_COMMIT = "\(.*\)";/\1/p; s/.*LLAMA_COMPILER = "\(.*\)";/\1/p' \
  "$SRC/common/build-info.cpp" 2>/dev/null | paste -sd'|' || true)
IFS='|' read -r b_num b_commit b_compiler <<<"${build_info:-0|unknown|unknown}"
tar_sha=$(sha256sum "$TARBALL" 2>/dev/null | cut -c1-16 || echo "?")

{
  echo "# UPG vs llama.cpp, CPU, random weights at the TinyLlama-1.1B shape"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'), host $(hostname)"
  echo "- CPU: $cpu_model; $n_cpus logical CPUs ($n_avail usable), $(lscpu | sed -n 's/^Thread(s) per core:[[:space:]]*//p') thread(s)/core; ${mem_gib} GiB RAM"
  echo "- CPU flags: ${cpu_flags:-(none of avx2/avx512*)}"
  echo "- llama.cpp: release $LLAMA_TAG (llama.cpp-$LLAMA_TAG.tar.xz sha256 $tar_sha…), build number $b_num, commit $b_commit (the tarball has no git metadata), $b_compiler; CPU backend, GGML_NATIVE=ON"
  echo "- threads: $THREADS; builds and quantizations under \`nice -n 19\`, benchmarks at normal priority$([[ $QUICK == 1 ]] && echo "; **--quick**")"
  echo "- shape: llama, hidden 2048, 22 layers, FFN 5632, 32 heads / 4 KV heads, head_dim 64, vocab 32000, ctx 2048, untied output (config: \`$CONFIG\`)"
  echo
} >"$REPORT"

# ---------------------------------------------------------------------------------------------
# 4. llama-bench
# ---------------------------------------------------------------------------------------------
{
  echo "## llama.cpp ($LLAMA_TAG): \`llama-bench -t $THREADS ${LB_ARGS[*]}\`"
  echo
} >>"$REPORT"
for q in "${QUANTS[@]}"; do
  f=$MODELS/tinyllama-random-$q.gguf
  if [[ ${QSTATUS[$q]} != ok ]]; then
    echo "- $q: skipped, ${QSTATUS[$q]}" >>"$REPORT"; continue
  fi
  log "llama-bench $q ${LB_ARGS[*]}"
  if "$BIN/llama-bench" -m "$f" -t "$THREADS" "${LB_ARGS[@]}" -o md >"$LOGS/bench-$q.md" 2>"$LOGS/bench-$q.err"; then
    echo "### $q ($(du -m "$f" | cut -f1) MiB file)" >>"$REPORT"
    echo >>"$REPORT"
    # keep the table; drop the trailing "build: ..." line (it is in the header)
    grep '^|' "$LOGS/bench-$q.md" >>"$REPORT"
    echo >>"$REPORT"
  else
    log "llama-bench $q failed"; tail -n 15 "$LOGS/bench-$q.err" >&2
    echo "- $q: llama-bench failed (see $LOGS/bench-$q.err)" >>"$REPORT"
  fi
done
echo >>"$REPORT"

# ---------------------------------------------------------------------------------------------
# 5. UPG: upg synth at the same shape, then upg bench
# ---------------------------------------------------------------------------------------------
{
  echo "## UPG: \`upg bench -t $THREADS ${UPG_ARGS[*]}\`"
  echo
} >>"$REPORT"
upg_ok=1
if [[ ! -x $UPG ]]; then
  msg="UPG binary $UPG not found (build UPG first, or pass --upg PATH); UPG half skipped."
  upg_ok=0
elif ! "$UPG" bench --help >/dev/null 2>&1; then
  msg="$UPG has no \`bench\` subcommand (older build?); UPG half skipped."
  upg_ok=0
elif ! "$UPG" synth --help >/dev/null 2>&1; then
  msg="$UPG has no \`synth\` subcommand; UPG half skipped."
  upg_ok=0
fi
if [[ $upg_ok == 0 ]]; then
  log "$msg"
  echo "**$msg**" >>"$REPORT"
else
  echo "- upg: \`$UPG\` ($("$UPG" --version 2>/dev/null | head -n1 || true))" >>"$REPORT"
  echo >>"$REPORT"
  for b in "${UPG_BPWS[@]}"; do
    f=$MODELS/tinyllama-random-bpw$b.upg
    if [[ ! -s $f ]]; then
      log "upg synth --bpw $b (log: $LOGS/synth-$b.log)"
      if ! run_logged "$LOGS/synth-$b.log" "$UPG" synth --config "$CONFIG" --bpw "$b" -o "$f.tmp"; then
        rm -f "$f.tmp"; echo "- bpw $b: \`upg synth\` failed (see $LOGS/synth-$b.log)" >>"$REPORT"; continue
      fi
      mv "$f.tmp" "$f"
    fi
    log "upg bench bpw $b ${UPG_ARGS[*]}"
    if "$UPG" bench "$f" "${UPG_ARGS[@]}" -t "$THREADS" -o md >"$LOGS/upg-bench-$b.md" 2>"$LOGS/upg-bench-$b.err"; then
      { echo "### UPG --bpw $b ($(du -m "$f" | cut -f1) MiB file)"; echo; cat "$LOGS/upg-bench-$b.md"; echo; } >>"$REPORT"
    else
      log "upg bench bpw $b failed"; tail -n 15 "$LOGS/upg-bench-$b.err" >&2
      echo "- bpw $b: \`upg bench\` failed (see $LOGS/upg-bench-$b.err)" >>"$REPORT"
    fi
  done
fi

{
  echo
  echo "Files and logs: \`$SCRATCH\` (models/, logs/). Weights are random, so only speed is meaningful here."
} >>"$REPORT"

log "report saved to $REPORT"
cat "$REPORT"
