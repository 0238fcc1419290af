# Shared by the script tests (sourced): a temporary directory $T removed on exit, pass/fail counters,
# and summary [NAME], which prints the counts and returns non-zero when anything failed.
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0; passes=0
pass() { passes=$((passes + 1)); }
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
summary() { echo "${1:+$1: }$passes passed, $fails failed"; [ "$fails" -eq 0 ]; }
