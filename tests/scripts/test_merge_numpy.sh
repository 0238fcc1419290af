#!/usr/bin/env bash
# End-to-end `upg merge`: linear, SLERP, task arithmetic and TIES of tiny same-shape random F32
# checkpoints, every output tensor checked against an independent numpy implementation of mergekit's
# formulas (tests/scripts/merge_oracle.py; relative error <= 1e-6, BF16 output <= 1 ulp), including a
# near-parallel tensor (SLERP's linear fallback), an anti-parallel one, a zero one, TIES sign conflicts
# and equal magnitudes at the trimming threshold; a wrong recipe must fail the check (the oracle
# discriminates); refusals (architecture, existing output, bad recipe). With ../shared/data: refA
# merged with itself (linear, SLERP) is bit-identical, `upg run` on it prints what refA prints, and
# `upg convert` compresses it. Usage: test_merge_numpy.sh path/to/upg
set -uo pipefail
UPG="$(realpath "$1")"
cd "$(dirname "$0")/../.."
PY=/usr/bin/python3
ORACLE=tests/scripts/merge_oracle.py
. "$(dirname "$0")/lib.sh"  # $T, pass, fail, summary
# expect_ok WHAT cmd...: must succeed (stdout+stderr in $T/out).
expect_ok() {
  local what="$1"; shift
  if "$@" >"$T/out" 2>&1; then pass; else fail "$what: '$*' failed"; sed 's/^/  | /' "$T/out" | tail -n 20; fi
}
# expect_error WHAT NEEDLE cmd...: must exit 1 and print NEEDLE.
expect_error() {
  local what="$1" needle="$2"; shift 2
  "$@" >"$T/out" 2>&1
  local rc=$?
  if [ "$rc" -ne 1 ]; then fail "$what: exit $rc, expected 1"; sed 's/^/  | /' "$T/out" | tail -n 10; return; fi
  if grep -qF -- "$needle" "$T/out"; then pass; else fail "$what: output lacks '$needle'"; sed 's/^/  | /' "$T/out" | tail -n 10; fi
}
has() { if grep -qF -- "$1" "$T/out"; then pass; else fail "output lacks '$1'"; sed 's/^/  | /' "$T/out" | tail -n 15; fi; }

M="$T/models"
expect_ok "make tiny checkpoints" $PY $ORACLE make "$M"

# merge_and_check NAME RECIPE-JSON: writes the recipe, merges, checks every tensor with numpy.
merge_and_check() {
  local name="$1"
  printf '%s\n' "$2" >"$T/$name.json"
  expect_ok "merge $name" "$UPG" merge "$T/$name.json" -o "$T/out_$name"
  expect_ok "numpy check of $name" $PY $ORACLE check "$T/$name.json" "$T/out_$name"
  cp "$T/out" "$T/check_$name.txt"
  grep -E "^(ok|FAIL)|failure" "$T/out" | sed "s/^/  /"
}

merge_and_check linear '{"method": "linear", "models": [{"model": "'$M/a'", "weight": 1.0}, {"model": "'$M/b'", "weight": 2.0}, {"model": "'$M/base'", "weight": 0.5}]}'
merge_and_check linear_raw '{"method": "linear", "normalize": false, "models": [{"model": "'$M/a'", "weight": 0.3}, {"model": "'$M/b'", "weight": -0.7}]}'
merge_and_check slerp '{"method": "slerp", "base_model": "'$M/a'", "models": [{"model": "'$M/a'"}, {"model": "'$M/b'"}], "t": 0.3}'
grep -q "near_parallel.weight.* lerp (cos +0.999" "$T/check_slerp.txt" && pass || fail "slerp: the near-parallel tensor did not take the linear fallback"
grep -q "anti_parallel.weight.* lerp (cos -1.0" "$T/check_slerp.txt" && pass || fail "slerp: the anti-parallel tensor did not take the linear fallback"
grep -q "embed_tokens.weight.* slerp (cos" "$T/check_slerp.txt" && pass || fail "slerp: the embedding did not take the spherical path"
merge_and_check task_arithmetic '{"method": "task_arithmetic", "base_model": "'$M/base'", "models": [{"model": "'$M/a'", "weight": 0.7}, {"model": "'$M/b'", "weight": 0.4}], "lambda": 1.3}'
merge_and_check ties '{"method": "ties", "base_model": "'$M/base'", "models": [{"model": "'$M/a'", "weight": 0.6, "density": 0.5}, {"model": "'$M/b'", "weight": 0.9, "density": 0.3}], "lambda": 1.1}'
grep -qE "conflict.weight.* [1-9][0-9]* sign conflicts" "$T/check_ties.txt" && pass || fail "ties: no sign conflicts were resolved in conflict.weight"
# mergekit's own layout (merge_method, "parameters" objects, the base listed among the models), BF16 output.
merge_and_check ties_mergekit '{"merge_method": "ties", "base_model": "'$M/base'", "dtype": "bfloat16", "parameters": {"normalize": false, "lambda": 0.8}, "models": [{"model": "'$M/base'"}, {"model": "'$M/a'", "parameters": {"weight": 1.0, "density": 0.7}}, {"model": "'$M/b'", "parameters": {"weight": 0.5, "density": 1.0}}]}'
grep -q '"torch_dtype": "bfloat16"' "$T/out_ties_mergekit/config.json" && pass || fail "config.json dtype not updated to bfloat16"
[ -f "$T/out_ties/merge_recipe.json" ] && [ -f "$T/out_ties/tokenizer.json" ] && [ -f "$T/out_ties/config.json" ] && pass \
  || fail "merged directory lacks merge_recipe.json, tokenizer.json or config.json"
expect_ok "python safetensors check of a merged file" $PY tests/scripts/check_safetensors.py "$T/out_ties/model.safetensors"

# The oracle discriminates: the ties output checked against other densities must fail.
sed 's/"density": 0.3/"density": 0.4/' "$T/ties.json" >"$T/ties_wrong.json"
if $PY $ORACLE check "$T/ties_wrong.json" "$T/out_ties" >"$T/out" 2>&1; then fail "the oracle accepted a wrong ties recipe"; else pass; fi

# Refusals, each leaving nothing behind.
printf '%s\n' '{"method": "linear", "models": [{"model": "'$M/a'", "weight": 1}, {"model": "'$M/other_arch'", "weight": 1}]}' >"$T/arch.json"
expect_error "different architectures" "cannot merge '$M/a' and '$M/other_arch': config.json \"architectures\"" \
  "$UPG" merge "$T/arch.json" -o "$T/out_arch"
has "side by side"
[ ! -e "$T/out_arch" ] && pass || fail "a refused merge left its output"
expect_error "existing output" "already exists" "$UPG" merge "$T/ties.json" -o "$T/out_linear"
expect_ok "existing output with --force" "$UPG" merge "$T/ties.json" -o "$T/out_linear" --force
expect_ok "numpy check after --force" $PY $ORACLE check "$T/ties.json" "$T/out_linear"
printf '{"method": "ties", "models": [' >"$T/bad.json"
expect_error "bad JSON" "not valid JSON" "$UPG" merge "$T/bad.json" -o "$T/out_bad"
printf '%s\n' '{"method": "ties", "models": [{"model": "'$M/a'", "weight": 1}]}' >"$T/nobase.json"
expect_error "ties without base" "ties needs \"base_model\"" "$UPG" merge "$T/nobase.json" -o "$T/out_bad"
[ "$(ls "$T" | grep -c tmp)" -eq 0 ] && pass || fail "temporary directory left behind"

# The real tiny model, with the shared data.
REFA=../shared/data/models/refA-phi3-26m
if [ ! -d "$REFA" ]; then
  echo "../shared/data not found: skipping the refA checks (merge with itself, upg run, upg convert)"
else
  REFA=$(realpath "$REFA")
  printf '%s\n' '{"method": "linear", "models": [{"model": "'$REFA'", "weight": 0.5}, {"model": "'$REFA'", "weight": 0.5}]}' >"$T/refa.json"
  expect_ok "merge refA with itself (linear)" "$UPG" merge "$T/refa.json" -o "$T/refa_linear"
  expect_ok "refA linear self-merge is bit-identical" $PY $ORACLE same "$REFA" "$T/refa_linear"
  cat "$T/out"
  printf '%s\n' '{"method": "slerp", "models": [{"model": "'$REFA'"}, {"model": "'$REFA'"}], "t": 0.3}' >"$T/refa_slerp.json"
  expect_ok "merge refA with itself (slerp)" "$UPG" merge "$T/refa_slerp.json" -o "$T/refa_slerp"
  expect_ok "refA slerp self-merge is bit-identical" $PY $ORACLE same "$REFA" "$T/refa_slerp"
  for f in tokenizer.json tokenizer_config.json generation_config.json chat_template.jinja config.json; do
    cmp -s "$REFA/$f" "$T/refa_linear/$f" 2>/dev/null || [ "$f" = config.json ] && pass || fail "$f not copied from refA"
  done
  expect_ok "upg run refA" "$UPG" run "$REFA" -p "The history of the city" -n 16 --temp 0
  "$UPG" run "$REFA" -p "The history of the city" -n 16 --temp 0 2>/dev/null >"$T/run_ref.txt"
  expect_ok "upg run on the merged refA" "$UPG" run "$T/refa_linear" -p "The history of the city" -n 16 --temp 0
  "$UPG" run "$T/refa_linear" -p "The history of the city" -n 16 --temp 0 2>/dev/null >"$T/run_merged.txt"
  if [ -s "$T/run_merged.txt" ] && cmp -s "$T/run_ref.txt" "$T/run_merged.txt"; then pass; else
    fail "upg run on the merged refA printed something else than on refA"; fi
  echo "  upg run on merged refA: $(head -c 200 "$T/run_merged.txt" | tr '\n' ' ')"
  expect_ok "upg convert of the merged refA" "$UPG" convert "$T/refa_linear" -o "$T/refa_merged.upg" --codec int8
  expect_ok "upg run of the converted merge" "$UPG" run "$T/refa_merged.upg" -p "The history of the city" -n 8 --temp 0
fi

summary test_merge_numpy
