#!/usr/bin/env bash
# Legacy pytorch_model.bin directories end to end through the command line: `upg convert --to
# safetensors` of tests/golden/torch_legacy (real torch.save output, single and sharded) gives exactly
# the tensors of its model.safetensors (checked by an independent Python reader) plus config.json, and
# is valid safetensors (check_safetensors.py); `upg convert` to .upg reads the .bin directory; an
# existing output is refused; a malicious pytorch_model.bin (os.system via __reduce__) fails every
# command with a message naming the global, creates no output and runs nothing (marker file).
# With ../shared/data: refA rewritten as sharded pytorch_model.bin prints with `upg run` exactly what
# refA prints, and so does its safetensors conversion. Usage: test_torch_legacy_cli.sh path/to/upg
set -uo pipefail
UPG="$(realpath "$1")"
cd "$(dirname "$0")/../.."
PY=/usr/bin/python3
FIX=tests/scripts/make_torch_fixtures.py
. "$(dirname "$0")/lib.sh"  # $T, pass, fail, summary
expect_ok() {
  local what="$1"; shift
  if "$@" >"$T/out" 2>&1; then pass; else fail "$what: '$*' failed"; sed 's/^/  | /' "$T/out" | tail -n 20; fi
}
expect_error() {
  local what="$1" needle="$2"; shift 2
  "$@" >"$T/out" 2>&1
  local rc=$?
  if [ "$rc" -ne 1 ]; then fail "$what: exit $rc, expected 1"; sed 's/^/  | /' "$T/out" | tail -n 10; return; fi
  if grep -qF -- "$needle" "$T/out"; then pass; else fail "$what: output lacks '$needle'"; sed 's/^/  | /' "$T/out" | tail -n 10; fi
}

# The same tensors (names, dtypes, shapes, bytes) in two safetensors directories, read by Python.
same_tensors() {
  $PY - "$1" "$2" <<'EOF'
import glob, os, sys
sys.path.insert(0, "tests/scripts")
from make_torch_fixtures import read_safetensors
def load(d):
    out = {}
    for p in glob.glob(os.path.join(d, "*.safetensors")):
        if os.path.basename(p) != "golden.safetensors":
            out.update(read_safetensors(p))
    return out
a, b = load(sys.argv[1]), load(sys.argv[2])
extra = set(b) - set(a)
assert extra <= {"lm_head.weight"}, extra  # torch_legacy's .bin adds the tied lm_head
for k in a:
    assert a[k] == b[k], k
if "lm_head.weight" in extra:
    assert b["lm_head.weight"][2] == b["model.embed_tokens.weight"][2]
print("same", len(a), "tensors")
EOF
}

G=tests/golden/torch_legacy
if [ -d "$G/single" ]; then
  for v in single sharded; do
    expect_ok "convert --to safetensors ($v)" "$UPG" convert --to safetensors "$G/$v" "$T/st_$v"
    grep -qF "from pytorch" "$T/out" && pass || fail "convert output lacks 'from pytorch'"
    [ -f "$T/st_$v/config.json" ] && [ -f "$T/st_$v/model.safetensors" ] && pass || fail "$v: missing output files"
    expect_ok "tensors equal ($v)" same_tensors "$G" "$T/st_$v"
    expect_ok "valid safetensors ($v)" $PY tests/scripts/check_safetensors.py "$T/st_$v/model.safetensors"
  done
  expect_ok "convert --to safetensors with shards" "$UPG" convert --to safetensors "$G/sharded" -o "$T/st_shards" \
    --shard-size 0.0002
  [ -f "$T/st_shards/model.safetensors.index.json" ] && pass || fail "no index for a sharded output"
  expect_ok "sharded output tensors equal" same_tensors "$G" "$T/st_shards"
  expect_error "existing output" "already exists" "$UPG" convert --to safetensors "$G/single" "$T/st_single"
  expect_error "--codec with --to safetensors" "apply to --to upg" "$UPG" convert --to safetensors --codec int8 \
    "$G/single" "$T/st_x"
  expect_ok "convert the .bin directory to .upg" "$UPG" convert "$G/sharded" -o "$T/legacy.upg" --codec int8
else
  echo "note: $G absent; real torch.save checks skipped"
fi

# Malicious: os.system via __reduce__.
expect_ok "make fixtures" $PY $FIX fixtures "$T/fx" "$T/MARKER"
mkdir -p "$T/evil"
cp "$T/fx/bad/os_system.bin" "$T/evil/pytorch_model.bin"
echo '{"architectures": ["LlamaForCausalLM"], "model_type": "llama"}' >"$T/evil/config.json"
expect_error "convert --to safetensors refuses" "posix.system" "$UPG" convert --to safetensors "$T/evil" "$T/evil_out"
[ ! -e "$T/evil_out" ] && pass || fail "an output was created for a refused input"
expect_error "convert refuses" "posix.system" "$UPG" convert "$T/evil" -o "$T/evil.upg" --codec int8
expect_error "run refuses" "posix.system" "$UPG" run "$T/evil" -p hi -n 1
ls "$T" | grep -q '\.tmp-' && fail "a temporary directory was left behind" || pass
[ ! -e "$T/MARKER" ] && pass || fail "the malicious pickle ran"

# refA as sharded pytorch_model.bin with shared storages: same generation as the original.
REFA=../shared/data/models/refA-phi3-26m
if [ -d "$REFA" ]; then
  expect_ok "refA to pytorch_model.bin" $PY $FIX from-safetensors "$REFA" "$T/refa_bin" --shards 2 --shared-storage
  cp "$REFA"/tokenizer.json "$REFA"/tokenizer_config.json "$T/refa_bin/" 2>/dev/null
  "$UPG" run "$REFA" -p "The history of the city" -n 16 --temp 0 2>/dev/null >"$T/run_ref.txt"
  expect_ok "upg run on refA .bin" "$UPG" run "$T/refa_bin" -p "The history of the city" -n 16 --temp 0
  "$UPG" run "$T/refa_bin" -p "The history of the city" -n 16 --temp 0 2>/dev/null >"$T/run_bin.txt"
  cmp -s "$T/run_ref.txt" "$T/run_bin.txt" && pass || fail "upg run on the .bin refA printed something else"
  expect_ok "refA .bin to safetensors" "$UPG" convert --to safetensors "$T/refa_bin" "$T/refa_st"
  "$UPG" run "$T/refa_st" -p "The history of the city" -n 16 --temp 0 2>/dev/null >"$T/run_st.txt"
  cmp -s "$T/run_ref.txt" "$T/run_st.txt" && pass || fail "upg run on the re-exported refA printed something else"
  expect_ok "refA tensors equal after the round trip" same_tensors "$REFA" "$T/refa_st"
else
  echo "note: ../shared/data absent; refA checks skipped"
fi

summary test_torch_legacy_cli
