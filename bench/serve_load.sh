#!/usr/bin/env bash
# Load benchmark of `upg serve` (a manual benchmark, not a test): starts a server on refA-phi3-26m
# (plus --model PATH when given) and, for each served model in turn, runs
# tests/server/load.mjs --mode bench: 1, 8 and 32 clients, each sending streaming completions back
# to back for --seconds; prints a markdown table per model (aggregate generated tokens/s, time to
# first token p50/p99, inter-token latency p50/p99, peak server RSS) and writes the JSON next to it.
#
# usage: bench/serve_load.sh [--upg BUILD/upg] [--model PATH] [--seconds 20] [--max-tokens 64]
#                            [--levels 1,8,32] [--threads 2] [--max-batch 32] [--out DIR]
#                            [--load-args "MORE load.mjs FLAGS"] [-- extra upg serve flags]
#
# Needs node >= 18 and tests/server/node_modules (cd tests/server && npm ci). Requests use
# temperature 0 and ignore_eos, so every request generates --max-tokens tokens. On a shared
# machine a level during which other processes kept > 0.25 cores busy is measured again (up to 2
# times, after waiting up to 120 s for quiet; load.mjs --max-other-cores/--retries/--quiet-wait);
# the table's CPU column says how clean each kept level was.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
UPG=$ROOT/build/upg
REFA=$ROOT/../shared/data/models/refA-phi3-26m
EXTRA_MODEL=
SECONDS_PER_LEVEL=20
MAX_TOKENS=64
LEVELS=1,8,32
THREADS=2
MAX_BATCH=32
OUT=
SERVE_EXTRA=()
LOAD_ARGS=

usage() { sed -n '2,17s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }
while [[ $# -gt 0 ]]; do
  case $1 in
    --upg) UPG=$2; shift 2 ;;
    --model) EXTRA_MODEL=$2; shift 2 ;;
    --seconds) SECONDS_PER_LEVEL=$2; shift 2 ;;
    --max-tokens) MAX_TOKENS=$2; shift 2 ;;
    --levels) LEVELS=$2; shift 2 ;;
    -t|--threads) THREADS=$2; shift 2 ;;
    --max-batch) MAX_BATCH=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --load-args) LOAD_ARGS=$2; shift 2 ;;
    --) shift; SERVE_EXTRA=("$@"); break ;;
    -h|--help) usage; exit 0 ;;
    *) echo "serve_load.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
[ -x "$UPG" ] || { echo "serve_load.sh: $UPG is not an executable (build it, or pass --upg)" >&2; exit 2; }
[ -f "$REFA/config.json" ] || { echo "serve_load.sh: $REFA is absent (../shared/data)" >&2; exit 2; }
command -v node >/dev/null || { echo "serve_load.sh: node is not installed" >&2; exit 2; }
[ -d "$ROOT/tests/server/node_modules/openai" ] || { echo "serve_load.sh: run: cd tests/server && npm ci" >&2; exit 2; }

T=$(mktemp -d)
OUT=${OUT:-$T}
mkdir -p "$OUT"
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null; [ "$OUT" = "$T" ] || rm -rf "$T"; }
trap cleanup EXIT

PORT=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
URL=http://127.0.0.1:$PORT
KEY=bench-$$
MODELS=(-m "$REFA")
IDS=(refA-phi3-26m)
if [ -n "$EXTRA_MODEL" ]; then
  MODELS+=(-m "$EXTRA_MODEL")
  id=$(basename "${EXTRA_MODEL%/}"); IDS+=("${id%.upg}")
fi
CMD=("$UPG" serve "${MODELS[@]}" --port "$PORT" --api-key "$KEY" -t "$THREADS" --max-batch "$MAX_BATCH" "${SERVE_EXTRA[@]}")
echo "server: ${CMD[*]}" >&2
"${CMD[@]}" >"$T/serve.log" 2>&1 &
PID=$!
for _ in $(seq 1 300); do
  kill -0 "$PID" 2>/dev/null || { echo "the server exited:" >&2; cat "$T/serve.log" >&2; exit 1; }
  /usr/bin/python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + "/health", timeout=2)' "$URL" 2>/dev/null && break
  sleep 0.1
done

echo "# upg serve load benchmark"
echo
echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), upg $("$UPG" --version 2>/dev/null | head -1)"
echo "server: upg serve -t $THREADS --max-batch $MAX_BATCH${SERVE_EXTRA[*]:+ ${SERVE_EXTRA[*]}}; streaming /v1/completions, max_tokens $MAX_TOKENS, ignore_eos, temperature 0, ${SECONDS_PER_LEVEL} s per level"
rc=0
for id in "${IDS[@]}"; do
  echo
  echo "## $id"
  echo
  node "$ROOT/tests/server/load.mjs" --mode bench --url "$URL" --key "$KEY" --models "$id" --pid "$PID" \
    --levels "$LEVELS" --seconds "$SECONDS_PER_LEVEL" --max-tokens "$MAX_TOKENS" --out "$OUT/serve_load_$id.json" $LOAD_ARGS || rc=1
done
echo
echo "JSON: $OUT/serve_load_*.json" >&2
exit $rc
