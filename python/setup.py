"""Builds the upg package's extension module (upg._upg) with CMake; metadata is in pyproject.toml.

Environment:
  UPG_BUILD_DIR   a build folder of this repository already configured with CMake (absolute, or
                  relative to the repository root): only its target _upg is built, reusing what is
                  already compiled there (scripts/test.sh does this with build/). Unset: a fresh
                  folder under python/build/ is configured (Release) and built.
  UPG_BUILD_JOBS  parallel compile jobs (default: the number of CPUs).
"""

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def project_version():
    """The version in CMakeLists.txt's project() call: what `upg --version` and upg.__version__ report."""
    text = (ROOT / "CMakeLists.txt").read_text()
    m = re.search(r"project\(\s*upg\s+VERSION\s+([0-9][0-9.]*)", text)
    if not m:
        sys.exit("setup.py: cannot find project(upg VERSION x.y.z) in " + str(ROOT / "CMakeLists.txt"))
    return m.group(1)


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        suffix = sysconfig.get_config_var("EXT_SUFFIX")
        jobs = os.environ.get("UPG_BUILD_JOBS") or str(os.cpu_count() or 2)
        given = os.environ.get("UPG_BUILD_DIR")
        if given:
            build_dir = Path(given)
            if not build_dir.is_absolute():
                build_dir = ROOT / build_dir
            if not (build_dir / "CMakeCache.txt").exists():
                sys.exit(f"setup.py: UPG_BUILD_DIR={given}: {build_dir} is not a configured CMake build folder")
        else:
            build_dir = Path(self.build_temp).resolve() / "cmake"
            build_dir.mkdir(parents=True, exist_ok=True)
            cmd = ["cmake", "-S", str(ROOT), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release",
                   f"-DPython_EXECUTABLE={sys.executable}", "-DUPG_PYTHON=ON"]
            if shutil.which("ninja"):
                cmd += ["-G", "Ninja"]
            subprocess.run(cmd, check=True)
        subprocess.run(["cmake", "--build", str(build_dir), "--target", "_upg", "-j", jobs], check=True)
        built = build_dir / "python" / "upg" / f"_upg{suffix}"
        if not built.exists():
            found = sorted(p.name for p in (build_dir / "python" / "upg").glob("_upg*")) or ["nothing"]
            sys.exit(f"setup.py: {built} was not built (found: {', '.join(found)}): the build folder is "
                     f"configured for another Python; reconfigure it with -DPython_EXECUTABLE={sys.executable}")
        dest = Path(self.get_ext_fullpath(ext.name))
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(built, dest)


setup(
    version=project_version(),
    ext_modules=[Extension("upg._upg", sources=[])],
    cmdclass={"build_ext": CMakeBuild},
)
