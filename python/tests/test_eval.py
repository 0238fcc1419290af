"""upg.eval: each evaluation returns the dict `upg eval ... --json` writes (same runs, same numbers)."""

import json
import os
import signal
import threading
import warnings

import pytest

import upg
from conftest import SHARED, run

TIMINGS = {"generate_seconds", "test_seconds"}


def cli_json(upg_bin, tmp_path, *args):
    out = tmp_path / "cli.json"
    run([upg_bin, "eval", *args, "--json", out])
    return json.loads(out.read_text())


def without_timings(d):
    if isinstance(d, dict):
        return {k: without_timings(v) for k, v in d.items() if k not in TIMINGS}
    if isinstance(d, list):
        return [without_timings(v) for v in d]
    return d


def data(rel):
    p = SHARED / rel
    if not p.exists():
        pytest.skip(f"shared data absent: {p}")
    return str(p)


@pytest.mark.parametrize("method", ["hf", "llama.cpp"])
def test_perplexity_equals_cli(refa, refa_path, wiki_path, upg_bin, tmp_path, method):
    cli = cli_json(upg_bin, tmp_path, "ppl", refa_path, "--text", wiki_path, "--chunks", "2", "--method", method)
    py = upg.eval.perplexity(refa, wiki_path, chunks=2, method=method, progress=False)
    assert py == cli
    assert py["complete"] and py["ppl"] > 1
    # A path is loaded for the call; the dict names it the same way.
    assert upg.eval.perplexity(refa_path, wiki_path, chunks=1, method=method, progress=False)["model"] == refa_path


def test_perplexity_of_text_and_default_data(refa, wiki_path, monkeypatch):
    text = open(wiki_path, encoding="utf-8").read()[:20000]
    d = upg.eval.perplexity(refa, text=text, ctx=128, chunks=3, progress=False)
    assert d["text"] == "<text>" and d["windows"] == 3
    monkeypatch.setenv("UPG_DATA_DIR", str(SHARED))
    d = upg.eval.perplexity(refa, ctx=64, chunks=1, progress=False)
    # (compared as real paths: ../shared may be reached through a symbolic link)
    assert os.path.realpath(d["text"]) == os.path.realpath(SHARED / "text" / "wiki.test.raw")


def test_kld_equals_cli(refa_path, refa_int8, wiki_path, upg_bin, tmp_path):
    cli = cli_json(upg_bin, tmp_path, "kld", "--base", refa_path, "--model", refa_int8, "--text", wiki_path,
                   "--chunks", "2")
    py = upg.eval.kld(refa_path, upg.Model.load(refa_int8), wiki_path, chunks=2, progress=False)
    assert py == cli
    assert 0 < py["kld_mean"]["value"] < 0.1 and py["same_top"]["value"] > 0.8


def test_multiple_choice_tasks_equal_cli(refa, refa_path, upg_bin, tmp_path):
    arc = data("eval/arc/ARC-Challenge-Test.jsonl")
    cli = cli_json(upg_bin, tmp_path, "arc_challenge", refa_path, "--data", arc, "--limit", "5")
    seen = []
    py = upg.eval.arc_challenge(refa, arc, limit=5, progress=lambda *a: seen.append(a))
    assert py == cli
    assert [s[0] for s in seen] == [1, 2, 3, 4, 5] and seen[-1][2].startswith("acc ")
    mmlu = data("eval/mmlu")
    cli = cli_json(upg_bin, tmp_path, "mmlu", refa_path, "--data", mmlu, "--limit", "1", "--shots", "0")
    assert upg.eval.mmlu(refa, mmlu, limit=1, shots=0, progress=False) == cli
    assert {t["name"] for t in upg.eval.tasks()} >= {"mmlu", "hellaswag", "arc_challenge", "sst2"}


def test_humaneval_equals_cli(refa, refa_path, upg_bin, tmp_path):
    he = data("eval/humaneval/HumanEval.jsonl.gz")
    cli = cli_json(upg_bin, tmp_path, "humaneval", refa_path, "--data", he, "--limit", "2", "--max-new-tokens", "24")
    py = upg.eval.humaneval(refa, he, limit=2, max_new_tokens=24, progress=False)
    assert without_timings(py) == without_timings(cli)
    assert py["summary"]["n"] == 2 and len(py["items"]) == 2
    assert py["isolation"]["complete"] is True  # else both would have refused to run


def test_eval_errors(refa, tmp_path):
    with pytest.raises(ValueError, match="unknown evaluation task"):
        upg.eval.task("nosuchtask", refa)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        upg.eval.mmlu(refa, tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        upg.eval.perplexity(refa, tmp_path / "nope.txt")
    with pytest.raises(ValueError, match="method"):
        upg.eval.perplexity(refa, text="x", method="bogus")
    with pytest.raises(upg.Error, match="fewer than one window"):
        upg.eval.perplexity(refa, text="too short", progress=False)
    with pytest.raises(FileNotFoundError):
        upg.eval.perplexity(tmp_path / "no-model", text="x")
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    with pytest.raises(upg.Error, match="bad.jsonl"):
        upg.eval.arc_challenge(refa, tmp_path / "bad.jsonl", progress=False)


def test_ctrl_c_interrupts_an_evaluation(refa, wiki_path):
    timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        upg.eval.perplexity(refa, wiki_path, ctx=512, progress=False)
    timer.join()
