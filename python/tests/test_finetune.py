"""upg.finetune: its PyTorch forward pass against the transformers goldens, an end-to-end run on a
tiny model (train, fold with apply_tuning, load the result), `upg apply-tuning` writing the same
file from the saved parameters, and the errors."""

import json
import os

import numpy as np
import pytest

import upg
from upg import finetune as ft
from conftest import GOLDEN, run

torch = pytest.importorskip("torch", reason="upg.finetune needs PyTorch (Debian: python3-torch)")

# Every supported golden model: default, linear, llama3 and su/longrope RoPE, partial rotary,
# fused and split projections, biases, tied embeddings, shards, GQA.
CASES = ["llama2_linear_f16", "llama32_tied_sharded_f32", "mistral_gqa_bf16", "phi3_mini_f16_oldstyle",
         "phi4_gqa_bf16", "qwen2_bias_tied_bf16", "phi3_su_short", "phi3_longrope_partial"]


@pytest.mark.parametrize("case", CASES)
def test_forward_matches_transformers(case):
    d = GOLDEN / case
    with open(d / "config.json") as f:
        cfg = ft.ModelConfig(json.load(f))
    W = {n: torch.from_numpy(a) for n, a in ft.load_hf_weights(str(d)).items()}
    g, _ = ft.read_safetensors(str(d / "golden.safetensors"))
    checked = 0
    for i in range(8):
        if f"prompt.{i}" not in g:
            break
        ids = torch.from_numpy(g[f"prompt.{i}"].astype(np.int64))[None]
        with torch.no_grad():
            y = ft.forward(torch, cfg, W, ids)[0].numpy()
        ref = g[f"logits.{i}"]
        assert y.shape == ref.shape
        err = np.abs(y - ref).max() / np.abs(ref).max()
        assert err < 1e-5, f"{case} prompt {i}: max relative logit error {err:.2e}"
        checked += 1
    assert checked >= 1


@pytest.mark.parametrize("case", ["gemma2_softcap_bf16", "mixtral_moe_bf16", "deepseek_v3_mla_bf16"])
def test_other_architectures_are_refused(case):
    with open(GOLDEN / case / "config.json") as f:
        cfg = json.load(f)
    with pytest.raises(ValueError, match="supports model types llama, mistral, qwen2, phi3"):
        ft.ModelConfig(cfg)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """mistral_gqa_bf16 as every matrix 2-bit trellis, and random calibration token ids."""
    d = tmp_path_factory.mktemp("finetune")
    src = GOLDEN / "mistral_gqa_bf16"
    out = d / "m.upg"
    upg.convert(src, out, codec="trellis:bits=2,group=64,passes=1", progress=False)
    tokens = np.random.default_rng(1).integers(0, 512, size=64 * 40).astype(np.int32)
    np.save(d / "tokens.npy", tokens)
    return {"dir": d, "src": str(src), "upg": str(out), "tokens": str(d / "tokens.npy")}


def test_end_to_end_train_fold_load(tiny, upg_bin):
    d = tiny["dir"]
    out, saved = d / "tuned.upg", d / "tuned.safetensors"
    args = ["--base", tiny["src"], "--model", tiny["upg"], "--tokens", tiny["tokens"], "-o", str(out),
            "--save-tuned", str(saved), "--steps", "30", "--lr", "3e-3", "--batch", "4", "--window", "64",
            "--eval-windows", "4", "--eval-every", "10", "--device", "cpu", "--threads", "1"]
    assert ft.main(args) == 0
    info = upg.info(out)
    tuning = info["converter"]["tuning"]
    assert tuning["steps"] == 30 and tuning["row_scaled"] == 16 and tuning["replaced"] == 5
    assert tuning["held_out_kld_after"] < tuning["held_out_kld_before"]
    # Same codecs and bytes as the file it came from: fine-tuning costs no bits.
    before = upg.info(tiny["upg"])
    assert info["stored_bytes"] == before["stored_bytes"]
    assert [(t["codec"], t["stored_bytes"]) for t in info["tensors"]] == \
        [(t["codec"], t["stored_bytes"]) for t in before["tensors"]]

    # The folded file runs as the tuned PyTorch model did (up to the bf16 rounding of the norms and
    # f16 rounding of the scales).
    tuned, _ = ft.read_safetensors(str(saved))
    with open(os.path.join(tiny["src"], "config.json")) as f:
        cfg = ft.ModelConfig(json.load(f))
    reader = upg._upg.UpgTensors(tiny["upg"])
    P1 = {n: torch.from_numpy(reader.decode(n)) for n in reader.names()}
    T = {n[:-len(".row_scale")] if n.endswith(".row_scale") else n: torch.from_numpy(a) for n, a in tuned.items()}
    ids = np.load(tiny["tokens"])[:24].astype(np.int64)
    with torch.no_grad():
        want = ft.forward(torch, cfg, P1, torch.from_numpy(ids)[None], T)[0].numpy()
        untuned = ft.forward(torch, cfg, P1, torch.from_numpy(ids)[None])[0].numpy()
    got = upg.Model.load(out).logits(ids.tolist())
    scale = np.abs(want).max()
    err = np.abs(got - want).max() / scale
    assert err < 1e-2, f"folded file against the tuned model: max relative logit error {err:.2e}"
    assert np.abs(untuned - want).max() / scale > 5 * err  # the tuning changed the model more than that

    # The command line folds the saved parameters into the same bytes.
    again = d / "again.upg"
    r = run([upg_bin, "apply-tuning", tiny["upg"], saved, "-o", again])
    assert "rows of 16 scaled, 5 replaced" in r.stdout
    assert again.read_bytes() == out.read_bytes()


def test_errors(tiny, tmp_path, upg_bin):
    base = ["--base", tiny["src"], "--model", tiny["upg"]]
    with pytest.raises(SystemExit) as e:
        ft.main(base + ["--tokens", tiny["tokens"]])
    assert e.value.code == 2  # nothing to write
    with pytest.raises(SystemExit) as e:
        ft.main(base + ["--save-tuned", str(tmp_path / "t.safetensors")])
    assert e.value.code == 2  # neither --calib nor --tokens
    bad = tmp_path / "bad.npy"
    np.save(bad, np.array([1, 2, 9999], dtype=np.int32))
    with pytest.raises(SystemExit, match=r"token ids must be in \[0, 512\)"):
        ft.main(base + ["--tokens", str(bad), "--save-tuned", str(tmp_path / "t.safetensors")])
    short = tmp_path / "short.npy"
    np.save(short, np.arange(100, dtype=np.int32))
    with pytest.raises(ValueError, match="calibration text too short"):
        ft.main(base + ["--tokens", str(short), "--save-tuned", str(tmp_path / "t.safetensors")])
    with pytest.raises(SystemExit, match="no such file"):
        ft.main(["--base", str(tmp_path / "nope"), "--model", tiny["upg"], "--tokens", tiny["tokens"],
                 "--save-tuned", str(tmp_path / "t.safetensors")])
    assert not (tmp_path / "t.safetensors").exists()
    # apply-tuning with a tuned file naming a tensor the model does not have.
    ft.write_safetensors(str(tmp_path / "x.safetensors"), {"model.layers.7.mlp.up_proj.weight.row_scale":
                                                           np.ones(256, np.float32)})
    with pytest.raises(upg.Error, match="names no tensor"):
        upg._upg.apply_tuning(tiny["upg"], str(tmp_path / "x.safetensors"), str(tmp_path / "o.upg"))
    assert not (tmp_path / "o.upg").exists()


def test_time_limit_stops_training_and_keeps_the_best(tiny, tmp_path):
    out = tmp_path / "t.safetensors"
    assert ft.main(["--base", tiny["src"], "--model", tiny["upg"], "--tokens", tiny["tokens"], "--window", "64",
                    "--batch", "2", "--steps", "1000000", "--time-limit", "1", "--save-tuned", str(out),
                    "--device", "cpu", "--threads", "1"]) == 0
    _, meta = ft.read_safetensors(str(out))
    report = json.loads(meta["upg.tuning"])
    assert 1 <= report["steps"] < 1000000
    assert report["held_out_kld_after"] <= report["held_out_kld_before"]
