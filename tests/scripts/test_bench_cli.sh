#!/usr/bin/env bash
# End-to-end `upg bench` on the bundled tiny model: the markdown and JSON reports carry every
# field (prompt and generation tests, batch sizes, bandwidth, size, memory), generation at a
# filled depth works for every KV type, tensor parallelism (--tp) on run, bench and eval, and bad
# arguments are clear errors. Speeds are not checked (that is for benchmarks, not tests). Argument 1: the upg binary.
set -uo pipefail
UPG="$1"
cd "$(dirname "$0")/../.."
PY=/usr/bin/python3
M=models/upg-tiny-phi3
. tests/scripts/lib.sh  # $T, pass, fail, summary
expect_status() {
  local want=$1 what=$2; shift 2
  "$@" >"$T/out" 2>&1
  local got=$?
  if [ "$got" -eq "$want" ]; then pass; else fail "$what: exit $got, expected $want"; sed 's/^/  | /' "$T/out" | tail -n 15; fi
}
has() { if grep -q -- "$1" "$T/out"; then pass; else fail "output lacks '$1'"; sed 's/^/  | /' "$T/out" | tail -n 15; fi; }

expect_status 0 "bench md" "$UPG" bench "$M" -p 16 -n 4 -b 1,3 -r 2 -t 1
has "| pp16 | 1 |"
has "| tg4 | 1 |"
has "| tg4 | 3 |"
has "memory read bandwidth"
has "peak memory"

for kv in f32 bf16 f16 q8; do
  expect_status 0 "bench json kv $kv" "$UPG" bench "$M" -p 8 -n 3 -b 2 -r 1 -t 1 -d 40 --kv-type "$kv" -o json
  cp "$T/out" "$T/bench_$kv.json"
  if "$PY" - "$T/bench_$kv.json" "$kv" <<'PYEOF'
import json, sys
j = json.load(open(sys.argv[1]))
assert j["kv_type"] == sys.argv[2] and j["depth"] == 40, j
assert j["architecture"] == "Phi3ForCausalLM" and j["parameters"] > 4_000_000
assert 15 < j["bits_per_weight"] < 17, j["bits_per_weight"]
assert j["memory_read_bandwidth_gbs"] > 0.1 and j["peak_rss_mib"] > 1 and j["kv_cache_peak_mib"] > 0
tests = {(r["test"], r["batch"]): r for r in j["results"]}
assert set(tests) == {("pp8", 1), ("tg3@d40", 2)}, tests
for r in j["results"]:
    assert r["tokens_per_second"] > 0 and r["stddev"] >= 0
assert tests[("tg3@d40", 2)]["tokens"] == 6
PYEOF
  then pass; else fail "bench json ($kv) lacks fields: $(head -c 600 "$T/out")"; fi
done

# The KV memory cap: a cap that fits runs; one below a block, or one a generation outgrows, is a
# clear error; a size that is not one is named.
expect_status 0 "bench under a cap" "$UPG" bench "$M" -p 8 -n 2 -b 2 -r 1 -t 1 --kv-memory 64M
expect_status 1 "cap below one block" "$UPG" bench "$M" -p 8 -n 2 -r 1 -t 1 --kv-memory 1K
has "smaller than one block"
expect_status 1 "not a size" "$UPG" bench "$M" --kv-memory lots
has "'lots' is not a size"
expect_status 1 "run outgrows its cap" "$UPG" run "$M" -p "The history of the city" -n 200 --temp 0 --ignore-eos --kv-memory 100K
has "KV cache full"

expect_status 1 "missing model" "$UPG" bench /nonexistent/model
has "/nonexistent/model"
expect_status 1 "batch 0" "$UPG" bench "$M" -b 0
has "batch sizes must be at least 1"
expect_status 1 "reps 0" "$UPG" bench "$M" -r 0
has "-r must be at least 1"
expect_status 105 "bad kv type" "$UPG" bench "$M" --kv-type fp8
has "fp8 not in"

# --device: the CPU by name; auto falls back to it without a GPU (and takes the GPU where there is
# one); unknown or malformed devices are named; cuda without a usable GPU says why.
expect_status 0 "device cpu" "$UPG" bench "$M" -p 4 -n 2 -r 1 -t 1 --device cpu
has "device cpu"
expect_status 0 "device auto" "$UPG" bench "$M" -p 4 -n 2 -r 1 -t 1 --device auto
has "device "
expect_status 1 "unknown device" "$UPG" run "$M" -p "x" --device tpu
has "unknown --device 'tpu'"
expect_status 1 "bad cuda index" "$UPG" run "$M" -p "x" --device cuda:x
has "cuda:N with N a device number"
if ! command -v nvidia-smi > /dev/null || ! nvidia-smi > /dev/null 2>&1; then
  expect_status 1 "cuda without a GPU" "$UPG" run "$M" -p "x" --device cuda
  has "--device cuda"
fi

# --tp: the model split over ranks (threads with host collectives on the CPU). run gives the greedy
# text of one engine; bench names the split; splits that cannot be made and bad options are named.
P="The history of the city"
"$UPG" run "$M" -p "$P" -n 24 --temp 0 --kv-type f32 -t 2 > "$T/one.txt" 2> /dev/null
expect_status 0 "run --tp 2" "$UPG" run "$M" -p "$P" -n 24 --temp 0 --kv-type f32 -t 2 --tp 2
"$UPG" run "$M" -p "$P" -n 24 --temp 0 --kv-type f32 -t 2 --tp 2 > "$T/two.txt" 2> /dev/null
if [ -s "$T/one.txt" ] && cmp -s "$T/one.txt" "$T/two.txt"; then pass; else fail "run --tp 2 text differs: $(cat "$T/two.txt") vs $(cat "$T/one.txt")"; fi
expect_status 0 "bench --tp 2" "$UPG" bench "$M" -p 8 -n 4 -b 1,2 -r 1 -t 2 --tp 2
has "tensor parallel: 2 ranks on cpu cpu, host collectives"
has "| tg4 | 2 |"
expect_status 0 "bench --tp 2 at a depth" "$UPG" bench "$M" -p 8 -n 3 -b 2 -r 1 -t 2 --tp 2 -d 40 --kv-type bf16
has "| tg3@d40 | 2 |"
# eval over the split: the same perplexities (both methods) and KL divergence as one engine, within
# 1e-5 relative (f32 cache on the CPU, a different order of the sums); an impossible split is named.
for method in hf llama.cpp; do
  "$UPG" eval ppl "$M" --text README.md -c 64 --chunks 3 --method "$method" -t 2 --json "$T/ppl1.json" > /dev/null 2>&1
  expect_status 0 "eval ppl --tp 2 ($method)" "$UPG" eval ppl "$M" --text README.md -c 64 --chunks 3 --method "$method" -t 2 --tp 2 --json "$T/ppl2.json"
  if "$PY" -c "import json,sys; a,b=(json.load(open(f))['ppl'] for f in sys.argv[1:]); sys.exit(0 if a > 1 and abs(a-b) <= 1e-5*a else 1)" "$T/ppl1.json" "$T/ppl2.json"; then pass; else fail "eval ppl --tp 2 ($method): $(cat "$T/ppl2.json" | head -c 300) vs $(head -c 300 "$T/ppl1.json")"; fi
done
"$UPG" eval kld --base "$M" --model "$M" --text README.md -c 64 --chunks 3 -t 2 --json "$T/kld1.json" > /dev/null 2>&1
expect_status 0 "eval kld --tp 2" "$UPG" eval kld --base "$M" --model "$M" --text README.md -c 64 --chunks 3 -t 2 --tp 2 --json "$T/kld2.json"
if "$PY" -c "import json,sys; a,b=(json.load(open(f)) for f in sys.argv[1:]); sys.exit(0 if a['chunks'] == b['chunks'] == 3 and b['kld_mean']['value'] < 1e-9 and abs(a['ppl']['value']-b['ppl']['value']) <= 1e-5*a['ppl']['value'] else 1)" "$T/kld1.json" "$T/kld2.json"; then pass; else fail "eval kld --tp 2: $(head -c 300 "$T/kld2.json")"; fi
expect_status 1 "eval ppl, more ranks than kv heads" "$UPG" eval ppl "$M" --text README.md -c 64 --chunks 1 --tp 64
has "tensor parallelism over 64 ranks: Phi3ForCausalLM has 2 key-value heads"
expect_status 1 "more ranks than kv heads" "$UPG" run "$M" -p "x" --tp 64
has "tensor parallelism over 64 ranks: Phi3ForCausalLM has 2 key-value heads"
expect_status 1 "nccl on the CPU" "$UPG" run "$M" -p "x" --tp 2 --tp-collectives nccl
has "NCCL communicators need CUDA backends"
expect_status 1 "devices for fewer ranks" "$UPG" run "$M" -p "x" --tp 2 --tp-devices cpu
has "needs one device per rank, not 1"
expect_status 105 "bad collectives" "$UPG" bench "$M" --tp 2 --tp-collectives mpi
has "mpi not in"

summary
