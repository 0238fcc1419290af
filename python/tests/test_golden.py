"""An independent check of the Python module: logits from upg.Model.logits (and greedy tokens from
upg.Session) against the outputs of Hugging Face transformers stored in tests/golden/ (made by
tools/make_goldens.py; see tests/golden/README.md). The goldens are read here with numpy alone
(the safetensors layout: 8-byte header size, JSON header, raw arrays), not with UPG's reader.

Tolerance as tests/unit/test_model_golden.cpp: max |ours - hf| / max |hf| < 1e-4 per position;
identical greedy tokens, except after a near-tie (transformers' top-1/top-2 gap below 1e-4)."""

import json
import struct
from pathlib import Path

import numpy as np
import pytest

import upg
from conftest import GOLDEN, REFA

TOL = 1e-4
_DTYPES = {"F32": np.float32, "I32": np.int32, "F16": np.float16, "I64": np.int64, "U8": np.uint8}


def read_safetensors(path):
    data = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        begin, end = t["data_offsets"]
        arr = np.frombuffer(data[8 + n + begin:8 + n + end], dtype=_DTYPES[t["dtype"]])
        out[name] = arr.reshape(t["shape"])
    return out


def cases():
    found = sorted(p for p in GOLDEN.iterdir() if (p / "golden.safetensors").exists()) if GOLDEN.is_dir() else []
    return [pytest.param(p, id=p.name) for p in found]


def row_err(ours, hf):
    return float(np.abs(ours - hf).max() / max(np.abs(hf).max(), 1e-30))


@pytest.mark.parametrize("case", cases())
def test_logits_match_transformers(case):
    model_dir = case
    if case.name == "refA":
        if not (REFA / "config.json").exists():
            pytest.skip(f"shared data absent: {REFA}")
        model_dir = REFA
    model = upg.Model.load(str(model_dir))
    g = read_safetensors(case / "golden.safetensors")
    checked = 0
    worst = 0.0
    i = 0
    while f"prompt.{i}" in g:
        prompt = [int(t) for t in g[f"prompt.{i}"]]
        logits = model.logits(prompt)
        assert logits.shape == (len(prompt), model.vocab_size)
        if f"logits.{i}" in g:
            hf = g[f"logits.{i}"]
            assert hf.shape == logits.shape
            errs = [row_err(logits[p], hf[p]) for p in range(len(prompt))]
            worst = max(worst, max(errs))
            assert max(errs) < TOL, f"prompt {i}: logits differ most at position {int(np.argmax(errs))}"
        if f"last_logits.{i}" in g:
            e = row_err(logits[-1], g[f"last_logits.{i}"])
            worst = max(worst, e)
            assert e < TOL, f"prompt {i}: last-position logits"
        if f"greedy.{i}" in g:
            greedy = [int(t) for t in g[f"greedy.{i}"]]
            gap = g.get(f"gap.{i}")
            s = model.session(max_context=len(prompt) + len(greedy) + 1)
            step = s.forward(prompt)
            assert row_err(step, logits[-1]) < 1e-5  # the last row alone (a 1-row LM head matmul)
            for k, want in enumerate(greedy):
                got = int(np.argmax(step))
                if got != want:
                    assert gap is not None and gap[k] < 1e-4, (
                        f"prompt {i}, greedy step {k}: ours {got}, transformers {want}")
                    break  # a near-tie: the rest of this prompt is not comparable
                step = s.forward([want])
        checked += 1
        i += 1
    assert checked > 0
    print(f"{case.name}: {checked} prompts, max relative logit error {worst:.2e}")


def test_there_are_goldens():
    assert len(cases()) >= 8
