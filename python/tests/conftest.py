"""Shared fixtures of the upg package's tests (pytest).

Run them against the installed package (scripts/test.sh installs it into a fresh virtual
environment first): `python -m pytest python/tests`. Paths:
  UPG_BIN        the upg command line to compare with (default: build/upg of this repository)
  UPG_BUILD_DIR  the CMake build folder, for the install and packaging tests (skipped when unset)
Tests that need the shared data set (../shared/data: refA, WikiText-2, evaluation data) skip
with a message when it is absent.
"""

import os
import signal
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# The Ctrl-C tests send SIGINT to this process and expect KeyboardInterrupt. A shell that starts a
# job in the background without job control (nohup ... &, some CI runners) leaves SIGINT ignored,
# and Python then installs no handler for it: put Python's default handler back.
if signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, signal.SIG_DFL, None):
    signal.signal(signal.SIGINT, signal.default_int_handler)
SHARED = ROOT.parent / "shared" / "data"
REFA = SHARED / "models" / "refA-phi3-26m"
WIKI = SHARED / "text" / "wiki.test.raw"
GOLDEN = ROOT / "tests" / "golden"


@pytest.fixture(scope="session")
def refa_path():
    if not (REFA / "config.json").exists():
        pytest.skip(f"shared data absent: {REFA} (tests that need refA skip)")
    return str(REFA)


@pytest.fixture(scope="session")
def refa(refa_path):
    import upg

    return upg.Model.load(refa_path)


@pytest.fixture(scope="session")
def wiki_path():
    if not WIKI.exists():
        pytest.skip(f"shared data absent: {WIKI}")
    return str(WIKI)


@pytest.fixture(scope="session")
def upg_bin():
    b = Path(os.environ.get("UPG_BIN") or ROOT / "build" / "upg")
    if not b.exists():
        pytest.skip(f"no upg command line at {b} (build it, or set UPG_BIN)")
    return str(b)


@pytest.fixture(scope="session")
def build_dir():
    d = os.environ.get("UPG_BUILD_DIR")
    if not d:
        pytest.skip("UPG_BUILD_DIR is not set (the install and packaging tests need the CMake build folder)")
    p = Path(d) if Path(d).is_absolute() else ROOT / d
    if not (p / "CMakeCache.txt").exists():
        pytest.skip(f"UPG_BUILD_DIR={d}: not a configured build folder")
    return p


def run(cmd, **kw):
    """subprocess.run with text output captured; the command and its output are shown on failure."""
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} exited {r.returncode}\nstdout:\n{r.stdout[-3000:]}\n"
                             f"stderr:\n{r.stderr[-3000:]}")
    return r


@pytest.fixture(scope="session")
def refa_int8(refa_path, upg_bin, tmp_path_factory):
    """refA converted by the command line with one codec (int8, groups of 128): a UPG file."""
    out = tmp_path_factory.mktemp("refa") / "refA-int8.upg"
    run([upg_bin, "convert", refa_path, "-o", out, "--codec", "int8:group=128"])
    return str(out)
