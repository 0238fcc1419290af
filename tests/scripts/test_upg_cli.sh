#!/usr/bin/env bash
# End-to-end test of `upg info`, `upg verify` and `upg decompress` on the committed fixture
# tests/data/upg/mistral_gqa_int8.upg (tests/golden/mistral_gqa_bf16 converted with int8, group 32;
# test_upg_model checks it against a fresh conversion). Argument 1: the upg binary.
set -uo pipefail
UPG="$1"
cd "$(dirname "$0")/../.."
PY=/usr/bin/python3
FIX=tests/data/upg/mistral_gqa_int8.upg
HF=tests/golden/mistral_gqa_bf16
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
# expect_status WANT DESCRIPTION CMD...: runs CMD, output in $T/out.
expect_status() {
  local want=$1 what=$2; shift 2
  "$@" >"$T/out" 2>&1
  local got=$?
  [ "$got" -eq "$want" ] || { fail "$what: exit $got, expected $want"; sed 's/^/  | /' "$T/out" | tail -n 15; }
}
has() { grep -q -- "$1" "$T/out" || { fail "output lacks '$1'"; sed 's/^/  | /' "$T/out" | tail -n 15; }; }

# info
expect_status 0 "info" "$UPG" info "$FIX"
has "model.layers.0.mlp.down_proj.weight"
has "int8"
has "bits per weight:"
has "ratio vs BF16:"
has "format:   upg 2.0"

# convert with the trellis codec, then verify against the original; --candidates errors
expect_status 0 "convert --codec trellis" "$UPG" convert "$HF" -o "$T/trellis.upg" --codec trellis:bits=4,group=64,passes=1
has "bits per parameter"
expect_status 0 "verify trellis --against" "$UPG" verify "$T/trellis.upg" --against "$HF" --max-err 0.25
expect_status 1 "convert --candidates trellis without --bpw" "$UPG" convert "$HF" -o "$T/x.upg" --candidates trellis
has "applies to --bpw"
expect_status 105 "convert --candidates unknown" "$UPG" convert "$HF" -o "$T/x.upg" --candidates nope
has "candidates"
[ ! -e "$T/x.upg" ] || fail "a refused convert left $T/x.upg behind"

# verify, alone and against the original
expect_status 0 "verify" "$UPG" verify "$FIX"
has "OK: "
expect_status 0 "verify --against" "$UPG" verify "$FIX" --against "$HF" --max-err 0.02
has "model.embed_tokens.weight"
expect_status 1 "verify --max-err too small" "$UPG" verify "$FIX" --against "$HF" --max-err 1e-6
has "exceeds --max-err"

# decompress to BF16: a valid safetensors HF directory that loads and matches the UPG decode to bf16 rounding
expect_status 0 "decompress" "$UPG" decompress "$FIX" -o "$T/hf"
[ -f "$T/hf/config.json" ] && [ -f "$T/hf/model.safetensors" ] || fail "decompress did not write config.json + model.safetensors"
grep -q '"torch_dtype": "bfloat16"' "$T/hf/config.json" || fail "config.json dtype not bfloat16"
[ "$(ls "$T" | grep -c tmp)" -eq 0 ] || fail "temporary directory left behind"
expect_status 0 "python safetensors check of decompressed" $PY tests/scripts/check_safetensors.py "$T/hf/model.safetensors"
expect_status 0 "verify vs decompressed bf16" "$UPG" verify "$FIX" --against "$T/hf" --no-recorded --max-err 0.005
# F32 decompression holds exactly the decoded values: error 0
expect_status 0 "decompress f32 sharded" "$UPG" decompress "$FIX" -o "$T/hf32" --dtype f32 --shard-size 0.0005
[ -f "$T/hf32/model.safetensors.index.json" ] || fail "no index for a sharded decompress"
expect_status 0 "verify vs decompressed f32" "$UPG" verify "$FIX" --against "$T/hf32" --no-recorded --max-err 0
# decompress refuses an existing, non-empty output and leaves it untouched
expect_status 1 "decompress onto existing" "$UPG" decompress "$FIX" -o "$T/hf"
has "already exists"

# The fixture itself: valid safetensors, 64-byte aligned, UPG table consistent
expect_status 0 "python check of the fixture" $PY tests/scripts/check_safetensors.py --align 64 --upg "$FIX"

# Damaged copies: a flipped byte near the end (inside the last arrays) -> checksum failure naming the tensor
cp "$FIX" "$T/flip.upg"
size=$(stat -c %s "$T/flip.upg")
printf '\x5a' | dd of="$T/flip.upg" bs=1 seek=$((size - 100)) conv=notrunc status=none
expect_status 1 "verify damaged" "$UPG" verify "$T/flip.upg"
has "checksum mismatch"
has "tensor '"
# Truncated copies -> a clear error (exit 1), never a crash
for cut in 4 100 $((size / 2)) $((size - 1)); do
  head -c "$cut" "$FIX" >"$T/cut.upg"
  expect_status 1 "info on a file truncated at $cut" "$UPG" info "$T/cut.upg"
  has "cut.upg"
done
expect_status 1 "info on a Hugging Face file" "$UPG" info "$HF/model.safetensors"
has "not a UPG file"

if [ "$fails" -ne 0 ]; then
  echo "test_upg_cli: $fails failure(s)"
  exit 1
fi
echo "test_upg_cli: all checks passed"
