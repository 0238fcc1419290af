"""Release packaging: `cmake --install` into a prefix (the tool runs from anywhere, the CMake package
config builds a program against the library, the Python package imports from the prefix) and the
Debian packages CPack makes (contents, dependencies, installed with dpkg into a scratch root).
Needs UPG_BUILD_DIR (a built CMake build folder); skipped otherwise."""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import upg
from conftest import ROOT, run

# The bundled model (in the repository, so these tests need no shared data).
TINY = str(ROOT / "models" / "upg-tiny-phi3")

CONSUMER_CMAKE = """cmake_minimum_required(VERSION 3.25)
project(consumer LANGUAGES CXX)
set(CMAKE_CXX_STANDARD 20)
find_package(upg {version} REQUIRED)
add_executable(consumer main.cpp)
target_link_libraries(consumer PRIVATE upg::upg_core)
"""

CONSUMER_MAIN = r"""#include <cstdio>
#include <vector>
#include "runtime/model.h"
#include "runtime/sampler.h"
#include "runtime/session.h"
int main(int argc, char** argv) {
  auto model = upg::Model::load(argv[1]);
  upg::Session s(*model);
  std::vector<int32_t> ids = {1, 2, 3};
  std::vector<float> logits;
  s.forward(ids, logits, false);
  std::printf("%s %lld %d %s\n", model->config().architecture.c_str(),
              static_cast<long long>(model->parameter_count()), upg::argmax(logits), UPG_VERSION);
  return 0;
}
"""


def core_layers(build_dir):
    """The layers upg::upg_core links (one static library each), from the graph CMake writes
    (cmake/UpgLayers.cmake: "<layer> TAB <deps> TAB core|separate TAB <archive>" per line)."""
    lines = (Path(build_dir) / "upg_layers.tsv").read_text().splitlines()
    layers = [f[0] for f in (line.split("\t") for line in lines) if f[2] == "core"]
    assert "base" in layers and "runtime" in layers, layers
    return layers


def system_python_env(site):
    """Environment running Debian's python3 with `site` first on its path (no virtual environment)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PYTHONPATH"] = str(site)
    env["PATH"] = "/usr/bin:/bin"
    return env


@pytest.fixture(scope="module")
def prefix(build_dir, tmp_path_factory):
    p = tmp_path_factory.mktemp("install") / "prefix"
    run(["cmake", "--install", build_dir, "--prefix", p])
    return p


def test_install_layout(prefix, build_dir):
    assert (prefix / "bin" / "upg").exists()
    lib = next(prefix.glob("lib*/libupg_base.a")).parent
    # One archive per layer upg::upg_core links (upg_core itself is an INTERFACE target, no archive).
    for layer in core_layers(build_dir):
        assert (lib / f"libupg_{layer}.a").exists(), layer
    assert not (lib / "libupg_server.a").exists()
    assert (lib / "cmake" / "upg" / "upgConfig.cmake").exists()
    assert (lib / "cmake" / "upg" / "upgConfigVersion.cmake").exists()
    inc = prefix / "include" / "upg"
    for h in ("runtime/model.h", "runtime/session.h", "tokenizer/tokenizer.h", "convert/converter.h",
              "eval/eval_runs.h", "base/error.h"):
        assert (inc / h).exists(), h
    assert not (inc / "server").exists()
    py = prefix / "lib" / "python3" / "dist-packages" / "upg"
    assert (py / "__init__.py").exists() and list(py.glob("_upg*.so"))


def test_installed_upg_runs_from_another_directory(prefix, tmp_path, upg_bin):
    exe = prefix / "bin" / "upg"
    assert run([exe, "--version"]).stdout.strip() == upg.__version__
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = run([exe, "run", TINY, "-p", "The history of the city", "-n", "12", "--temp", "0"], cwd=elsewhere)
    want = run([upg_bin, "run", TINY, "-p", "The history of the city", "-n", "12", "--temp", "0"]).stdout
    assert r.stdout == want


def test_cmake_package_config_builds_a_program(prefix, tmp_path):
    src = tmp_path / "consumer"
    src.mkdir()
    (src / "CMakeLists.txt").write_text(CONSUMER_CMAKE.format(version=upg.__version__))
    (src / "main.cpp").write_text(CONSUMER_MAIN)
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    run(["cmake", "-S", src, "-B", src / "build", f"-DCMAKE_PREFIX_PATH={prefix}", "-DCMAKE_BUILD_TYPE=Release",
         *gen])
    run(["cmake", "--build", src / "build"])
    out = run([src / "build" / "consumer", TINY]).stdout.split()
    m = upg.Model.load(TINY)
    assert out == [m.architecture, str(m.parameters), str(int(np.argmax(m.session().forward([1, 2, 3])))),
                   upg.__version__]


def test_installed_python_package_imports(prefix):
    site = prefix / "lib" / "python3" / "dist-packages"
    code = ("import upg, sys; m = upg.Model.load(sys.argv[1]); "
            "print(upg.__file__); print(upg.__version__); print(m.generate('Hello', max_tokens=4, temperature=0))")
    r = run(["/usr/bin/python3", "-c", code, TINY], env=system_python_env(site))
    lines = r.stdout.splitlines()
    assert lines[0].startswith(str(site)) and lines[1] == upg.__version__


def test_debian_packages(build_dir, tmp_path):
    if not shutil.which("cpack") or not shutil.which("dpkg-deb"):
        pytest.skip("cpack or dpkg-deb is missing")
    out = tmp_path / "debs"
    run(["cpack", "-G", "DEB", "-B", out], cwd=build_dir)
    v = upg.__version__
    debs = {p.name: p for p in out.glob("*.deb")}
    assert set(debs) == {f"upg_{v}_amd64.deb", f"libupg-dev_{v}_amd64.deb", f"python3-upg_{v}_amd64.deb"}

    def field(deb, name):
        return run(["dpkg-deb", "-f", deb, name]).stdout.strip()

    def files(deb):
        return {line.split()[-1] for line in run(["dpkg-deb", "-c", deb]).stdout.splitlines()}

    cli, dev, py = (debs[f"{n}_{v}_amd64.deb"] for n in ("upg", "libupg-dev", "python3-upg"))
    assert field(cli, "Version") == v
    deps = field(cli, "Depends")
    for lib in ("libc6", "libgomp1", "libpcre2-8-0", "libxxhash0", "libstdc++6"):
        assert lib in deps, deps
    assert "./usr/bin/upg" in files(cli)
    devf = files(dev)
    assert "./usr/include/upg/runtime/model.h" in devf
    for layer in core_layers(build_dir):
        assert any(f.endswith(f"/libupg_{layer}.a") for f in devf), layer
    assert any(f.endswith("/cmake/upg/upgConfig.cmake") for f in devf)
    assert "nlohmann-json3-dev" in field(dev, "Depends")
    pyf = files(py)
    assert "./usr/lib/python3/dist-packages/upg/__init__.py" in pyf
    assert any("/upg/_upg" in f and f.endswith(".so") for f in pyf)
    assert "python3-numpy" in field(py, "Depends")

    # Install all three with dpkg into a scratch root (this system's package database is not touched),
    # or, without root, unpack them.
    root = tmp_path / "root"
    if os.geteuid() == 0:
        (root / "var" / "lib" / "dpkg" / "info").mkdir(parents=True)
        (root / "var" / "lib" / "dpkg" / "updates").mkdir()
        (root / "var" / "lib" / "dpkg" / "status").write_text("")
        run(["dpkg", f"--root={root}", "--force-depends", "--force-script-chrootless", "--log=/dev/null", "-i",
             cli, dev, py])
        status = run(["dpkg-query", f"--admindir={root / 'var/lib/dpkg'}", "-W", "-f=${Package} ${Status}\n"]).stdout
        for name in ("upg", "libupg-dev", "python3-upg"):
            assert f"{name} install ok installed" in status, status
    else:
        for deb in (cli, dev, py):
            run(["dpkg-deb", "-x", deb, root])
    exe = root / "usr" / "bin" / "upg"
    assert run([exe, "--version"]).stdout.strip() == v
    r = run([exe, "run", TINY, "-p", "Hello", "-n", "4", "--temp", "0"], cwd=tmp_path)
    assert r.stdout.startswith("Hello")
    site = root / "usr" / "lib" / "python3" / "dist-packages"
    r = run(["/usr/bin/python3", "-c", "import upg; print(upg.__file__, upg.__version__)"],
            env=system_python_env(site))
    assert r.stdout.split() == [str(site / "upg" / "__init__.py"), v]
