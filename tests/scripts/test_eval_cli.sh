#!/usr/bin/env bash
# End-to-end `upg eval`: clear errors for unknown tasks and bad data files; with the shared data
# (../shared/data, refA) every task on a few items, JSON output and --resume, ppl (both methods)
# and kld of refA against itself (KLD 0, same top 100%). Usage: test_eval_cli.sh path/to/upg
set -uo pipefail
UPG="$1"
PY=/usr/bin/python3
. "$(dirname "$0")/lib.sh"  # $T, pass, fail, summary
# expect_error "needle" cmd...: the command must fail and print needle on stderr.
expect_error() {
  local needle="$1"; shift
  if "$@" >"$T/out" 2>"$T/err"; then fail "expected an error from: $*"; return; fi
  if grep -qF -- "$needle" "$T/err"; then pass; else fail "'$*' error lacks '$needle': $(cat "$T/err")"; fi
}
# expect_ok cmd...: the command must succeed (stdout in $T/out).
expect_ok() {
  if "$@" >"$T/out" 2>"$T/err"; then pass; else fail "'$*' failed: $(tail -3 "$T/err")"; fi
}
# check_json FILE PYTHON-EXPR (j = the parsed file)
check_json() {
  if "$PY" -c "import json,sys; j=json.load(open('$1')); sys.exit(0 if ($2) else 1)"; then pass; else fail "$1: not ($2)"; fi
}

expect_error "give a task" "$UPG" eval
expect_error "unknown evaluation task 'nosuch'" "$UPG" eval nosuch model
expect_error "model" "$UPG" eval mmlu

REFA=../shared/data/models/refA-phi3-26m
if [ ! -d "$REFA" ]; then
  echo "../shared/data not found: skipping the model-based checks"
  summary; exit
fi

# Bad data files: the error names the file.
expect_error "/nonexistent/hs.txt" "$UPG" eval hellaswag "$REFA" --data /nonexistent/hs.txt
expect_error "rte_label.tsv" "$UPG" eval rte "$REFA" --data tests/data/eval/bad/rte_label.tsv
expect_error "bad/test" "$UPG" eval mmlu "$REFA" --data tests/data/eval/bad --shots 0
expect_error "0-shot" "$UPG" eval arc_challenge "$REFA" --shots 5 --limit 1
expect_error "--resume needs --json" "$UPG" eval sst2 "$REFA" --data tests/data/eval/glue --resume

# MMLU, 1 question per subject, 1-shot; then --resume re-uses all of them.
expect_ok "$UPG" eval mmlu "$REFA" --limit 1 --shots 1 --json "$T/mmlu.json"
grep -q "mmlu micro average" "$T/out" && pass || fail "mmlu summary missing: $(cat "$T/out")"
check_json "$T/mmlu.json" "len(j['items']) == 57 and j['complete'] and j['summary']['micro']['n'] == 57 and len(j['summary']['categories']) == 4 and all(len(i['logliks']) == 4 for i in j['items'])"
expect_ok "$UPG" eval mmlu "$REFA" --limit 1 --shots 1 --json "$T/mmlu.json" --resume
grep -q "resumed 57 items" "$T/err" && pass || fail "resume did not reuse the items: $(cat "$T/err")"
expect_error "shots" "$UPG" eval mmlu "$REFA" --limit 1 --shots 2 --json "$T/mmlu.json" --resume

expect_ok "$UPG" eval hellaswag "$REFA" --limit 3 --json "$T/hs.json"
check_json "$T/hs.json" "len(j['items']) == 3 and 'acc_norm' in j['summary']"
expect_ok "$UPG" eval arc_challenge "$REFA" --limit 3 --json "$T/arc.json"
check_json "$T/arc.json" "len(j['items']) == 3 and j['items'][0]['id'] == 'Mercury_7175875'"
for task in sst2 rte mrpc qnli cola; do
  expect_ok "$UPG" eval $task "$REFA" --data tests/data/eval/glue --json "$T/$task.json"
  check_json "$T/$task.json" "j['complete'] and len(j['items']) >= 2 and all(len(i['logliks']) == 2 for i in j['items'])"
done
check_json "$T/mrpc.json" "'f1' in j['summary']"
check_json "$T/cola.json" "'mcc' in j['summary']"

# Perplexity, 2 windows each way; KLD of refA against itself.
expect_ok "$UPG" eval ppl "$REFA" --method llama.cpp --chunks 2 --json "$T/ppl.json"
grep -q "Final estimate: PPL = " "$T/out" && pass || fail "no llama.cpp-style estimate: $(cat "$T/out")"
check_json "$T/ppl.json" "j['chunks'] == 2 and j['tokens'] == 510 and 20 < j['ppl'] < 1000 and j['ppl_err'] > 0"
expect_ok "$UPG" eval ppl "$REFA" --chunks 1 --json "$T/pplhf.json"
check_json "$T/pplhf.json" "j['windows'] == 1 and j['tokens'] == 511 and 20 < j['ppl'] < 1000"
expect_ok "$UPG" eval kld --base "$REFA" --model "$REFA" --chunks 1 --json "$T/kld.json"
check_json "$T/kld.json" "j['kld_mean']['value'] == 0 and j['same_top']['value'] == 1 and j['tokens'] == 255"
grep -q "Same top p: 100.000" "$T/out" && pass || fail "same top p not 100%: $(cat "$T/out")"
expect_error "wiki.test.raw" "$UPG" eval ppl "$REFA" --text /nonexistent/wiki.test.raw

summary
