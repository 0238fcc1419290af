#!/usr/bin/env bash
# Chat-template oracle check: re-renders every case in tests/data/chat_templates/cases.json with
# python3-jinja2 in transformers' environment and fails if any output differs from the committed
# expectation (which the GoogleTest test_chat_template compares the C++ renderer against).
# Argument 1: path of the upg binary (unused; the cases do not need it).
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! /usr/bin/python3 -c 'import jinja2' 2>/dev/null; then
  echo "test_chat_template_oracle: python3-jinja2 is missing (scripts/setup.sh installs it)" >&2
  exit 1
fi
/usr/bin/python3 tests/scripts/chat_template_oracle.py --check
