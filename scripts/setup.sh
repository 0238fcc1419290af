#!/usr/bin/env bash
# Installs UPG's build dependencies from Debian 12 packages (idempotent) and builds it.
# Usage: scripts/setup.sh [BUILD_DIR]   (default: build; set UPG_BUILD_TYPE, UPG_SANITIZE=1 to change;
#        UPG_TARGETS="a b" builds only those targets; UPG_TEST_DEPS=1 also installs what the server
#        tests use: Node.js + npm (the official OpenAI SDK and playwright-core from tests/server's lock
#        file), Debian's Chromium, and PyTorch for the fine-tuning tests)
set -euo pipefail
cd "$(dirname "$0")/.."
PKGS=(build-essential cmake ninja-build pkg-config nlohmann-json3-dev libcli11-dev libpcre2-dev libicu-dev libbz2-dev
      zlib1g-dev libseccomp-dev libgtest-dev libgmock-dev libbenchmark-dev libxxhash-dev python3 python3-jinja2 python3-numpy
      clang-14 libfuzzer-14-dev libomp-14-dev  # clang + libFuzzer: tests/fuzz/run_fuzz.sh
      libcpp-httplib-dev                       # upg serve
      python3-dev pybind11-dev python3-venv python3-pip python3-setuptools python3-wheel  # python/ (import upg)
      python3-pytest)                          # python/tests
if [ "${UPG_TEST_DEPS:-0}" = "1" ]; then
  PKGS+=(chromium curl python3-torch)  # python3-torch: python/tests/test_finetune.py (upg.finetune)
  command -v node >/dev/null && command -v npm >/dev/null || PKGS+=(nodejs npm)
fi
missing=()
for p in "${PKGS[@]}"; do
  dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "setup: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
BUILD_DIR="${1:-build}"
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE="${UPG_BUILD_TYPE:-Release}" \
      -DUPG_SANITIZE="${UPG_SANITIZE:-OFF}" -DUPG_NATIVE="${UPG_NATIVE:-OFF}" -DPython_EXECUTABLE=/usr/bin/python3 >/dev/null
# shellcheck disable=SC2086
cmake --build "$BUILD_DIR" -j "$(nproc)" ${UPG_TARGETS:+--target $UPG_TARGETS}
if [ "${UPG_TEST_DEPS:-0}" = "1" ] && [ ! -d tests/server/node_modules ]; then
  (cd tests/server && npm ci --no-audit --no-fund --loglevel=error)
fi
