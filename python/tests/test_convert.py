"""upg.convert and upg.info: a budgeted conversion of refA that `upg verify` accepts, the same file
as `upg convert` writes, errors, Ctrl-C, and info() against `upg info`."""

import os
import re
import signal
import threading

import pytest

import upg
from conftest import GOLDEN, ROOT, run

# A small candidate list keeps the budgeted conversion of refA under half a minute on 2 cores
# (the converter's full list of 19, with GPTQ, takes minutes there).
CANDIDATES = ["codebook:bits=3,group=128,levels=gaussian,rotate=true",
              "codebook:bits=4,group=128,levels=gaussian,rotate=true", "int8:group=128"]


def test_convert_refa_with_a_small_budget(refa_path, upg_bin, tmp_path):
    out = tmp_path / "refA-3.5.upg"
    calls = []
    report = upg.convert(refa_path, out, bpw=3.5, calib=ROOT / "README.md", calib_tokens=512, probe_windows=0,
                         gptq=False, candidates=CANDIDATES, progress=lambda *a: calls.append(a))
    assert out.exists() and sorted(os.listdir(tmp_path)) == ["refA-3.5.upg"]
    assert report["path"] == str(out) and report["files"] == [str(out)]
    assert report["bits_per_weight"] <= 3.5
    assert report["file_bytes"] == out.stat().st_size
    assert report["parameters"] == 26_483_200
    assert {t["codec"] for t in report["tensors"]} <= set(CANDIDATES) | {"bf16"}
    stages = [c[0] for c in calls]
    assert stages[0] == "calibrate" and "measure" in stages and stages[-1] == "write"
    assert calls[-1][1] == calls[-1][2]  # write: done == total at the end
    r = run([upg_bin, "verify", out])
    assert "OK:" in r.stdout
    info = upg.info(out)
    assert info["bits_per_weight"] <= 3.5
    assert info["converter"]["options"]["bpw"] == 3.5
    assert info["converter"]["options"]["calib_file"] == "README.md"
    m = upg.Model.load(out)
    assert m.generate("The history of the city", max_tokens=8, temperature=0)


def test_python_convert_writes_the_cli_file(upg_bin, tmp_path, capsys):
    src = GOLDEN / "mistral_gqa_bf16"
    cli = tmp_path / "cli.upg"
    py = tmp_path / "py.upg"
    run([upg_bin, "convert", src, "-o", cli, "--codec", "int8:group=32"])
    report = upg.convert(str(src), str(py), codec="int8:group=32", progress=True)
    assert py.read_bytes() == cli.read_bytes()
    assert "write" in capsys.readouterr().err  # the progress line
    assert report["tensors"][0]["codec"] in ("int8:group=32", "bf16")


def test_info_matches_upg_info(refa_int8, upg_bin):
    d = upg.info(refa_int8)
    out = run([upg_bin, "info", refa_int8]).stdout
    assert d["format"] == "upg" and d["architecture"] == "Phi3ForCausalLM"
    assert d["parameters"] == int(re.search(r"parameters:\s+(\d+)", out).group(1))
    assert round(d["bits_per_weight"], 3) == float(re.search(r"bits per weight:\s+([\d.]+)", out).group(1))
    assert d["file_bytes"] == os.path.getsize(refa_int8)
    assert d["codecs"]["int8"]["tensors"] == len([t for t in d["tensors"] if t["codec"] == "int8"])
    t = next(t for t in d["tensors"] if t["name"] == "model.layers.0.mlp.down_proj.weight")
    assert t["codec"] == "int8" and t["shape"] == [512, 1536] and t["err"] > 0
    assert f"{t['stored_bytes']}" in out


def test_convert_errors(refa_path, tmp_path):
    src = str(GOLDEN / "mistral_gqa_bf16")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        upg.convert(tmp_path / "missing", tmp_path / "x.upg", codec="int8")
    with pytest.raises(ValueError, match="calibration"):
        upg.convert(src, tmp_path / "x.upg", bpw=3)
    with pytest.raises(ValueError, match="not both"):
        upg.convert(src, tmp_path / "x.upg", bpw=3, codec="int8", calib_text="x")
    with pytest.raises(ValueError, match="out of range"):
        upg.convert(src, tmp_path / "x.upg", bpw=0.5, calib_text="x")
    with pytest.raises(FileNotFoundError, match="calibration file"):
        upg.convert(src, tmp_path / "x.upg", bpw=3, calib=tmp_path / "nope.txt")
    with pytest.raises(upg.Error, match="codec"):
        upg.convert(src, tmp_path / "x.upg", codec="nosuchcodec")
    with pytest.raises(upg.Error, match="does not exist"):
        upg.convert(src, tmp_path / "no" / "dir" / "x.upg", codec="int8")
    # An unreachable budget: the library's message, and no output left behind.
    with pytest.raises(upg.Error, match="below the smallest file"):
        upg.convert(refa_path, tmp_path / "x.upg", bpw=2, calib_text="Some calibration text. " * 40,
                    calib_tokens=64, calib_window=32, probe_windows=0, gptq=False, candidates=["int8:group=128"],
                    progress=False)
    assert os.listdir(tmp_path) == []
    with pytest.raises(FileNotFoundError):
        upg.info(tmp_path / "nope.upg")
    with pytest.raises(upg.Error):
        upg.info(src)  # a Hugging Face directory is not a UPG model


def test_ctrl_c_interrupts_convert_and_leaves_nothing(refa_path, tmp_path):
    out = tmp_path / "refA.upg"
    seen = []
    timer = threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        upg.convert(refa_path, out, codec="codebook:bits=3,group=64", progress=lambda *a: seen.append(a))
    timer.join()
    assert not seen or seen[-1][1] < seen[-1][2]  # stopped before the end (checked between tensors)
    assert os.listdir(tmp_path) == []  # neither the file nor a temporary one
