"""upg.Model, upg.Tokenizer, upg.Session: loading, properties, generation (against `upg run`),
streaming, logits (against the C++ Session, batched against one by one), scores, errors, Ctrl-C."""

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import upg
from conftest import GOLDEN, ROOT, run

PROMPTS = ["The history of the city", "In 1905, the university", "Water is"]


def test_installed_package_is_tested():
    # The tests must exercise the installed package, not the source folder.
    assert Path(upg.__file__).resolve().parent != (ROOT / "python" / "upg").resolve()
    assert upg._upg.__file__.endswith(".so")


def test_version_is_the_cli_version(upg_bin):
    out = run([upg_bin, "--version"]).stdout.strip()
    assert out == upg.__version__
    from importlib.metadata import version

    assert version("upg") == upg.__version__


def test_properties(refa, refa_path):
    assert refa.path == refa_path
    assert refa.format == "hf"
    assert refa.architecture == "Phi3ForCausalLM"
    assert refa.model_type == "phi3"
    assert refa.parameters == 26_483_200
    assert refa.config["hidden_size"] == 512
    assert refa.vocab_size == 8192
    assert refa.max_context == refa.config["max_position_embeddings"]
    assert 15.9 < refa.bits_per_weight < 16.1
    codecs = refa.codecs
    assert codecs["model.layers.0.mlp.down_proj.weight"] == "bf16"
    assert len(codecs) == len(set(codecs))
    assert refa.generation_config["do_sample"] is False
    assert "Phi3ForCausalLM" in repr(refa)


def test_tokenizer(refa):
    tok = refa.tokenizer
    ids = tok.encode("The history of the city")
    assert all(isinstance(i, int) for i in ids)
    assert tok.decode(ids) == "The history of the city"
    assert tok.vocab_size == 8192
    assert tok.eos_ids == [0]
    assert tok.chat_template is not None
    text = tok.apply_chat_template([{"role": "user", "content": "Hello"}])
    assert "<|im_start|>user<|im_sep|>Hello<|im_end|>" in text
    assert text.endswith("<|im_start|>assistant<|im_sep|>")
    assert tok.apply_chat_template([{"role": "user", "content": "Hello"}], tokenize=True) == tok.encode(text, False)
    assert tok.token_to_id("<|im_end|>") is not None
    assert tok.decode([tok.token_to_id("<|im_end|>")], skip_special_tokens=True) == ""


@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_generation_equals_upg_run(refa, refa_path, upg_bin, prompt):
    out = run([upg_bin, "run", refa_path, "-p", prompt, "-n", "32", "--temp", "0"]).stdout
    text = refa.generate(prompt, max_tokens=32, temperature=0)
    assert out == prompt + text + "\n"
    assert refa.last_stats["generated_tokens"] <= 32
    assert len(refa.last_stats["token_ids"]) == refa.last_stats["generated_tokens"]


def test_sampled_generation_equals_upg_run(refa, refa_path, upg_bin):
    prompt = PROMPTS[0]
    args = ["--temp", "0.9", "--top-k", "20", "--top-p", "0.9", "--min-p", "0.02", "--seed", "7", "--stop", "."]
    out = run([upg_bin, "run", refa_path, "-p", prompt, "-n", "40", *args]).stdout
    text = refa.generate(prompt, max_tokens=40, temperature=0.9, top_k=20, top_p=0.9, min_p=0.02, seed=7, stop=".")
    assert out == prompt + text + "\n"


def test_streaming_equals_non_streaming(refa):
    for kw in (dict(temperature=0), dict(temperature=1.0, seed=3), dict(temperature=0, stop=["the"])):
        whole = refa.generate(PROMPTS[1], max_tokens=48, **kw)
        stats = refa.last_stats
        pieces = list(refa.generate(PROMPTS[1], max_tokens=48, stream=True, **kw))
        assert "".join(pieces) == whole
        assert len(pieces) > 1 or len(whole) < 4
        assert refa.last_stats["token_ids"] == stats["token_ids"]


def test_stream_stops_when_left_early(refa):
    stream = refa.generate(PROMPTS[0], max_tokens=500, ignore_eos=True, temperature=0, stream=True)
    first = next(stream)
    assert isinstance(first, str)
    stream.close()
    with pytest.raises(StopIteration):
        while True:
            next(stream)
    # Generators dropped mid-way are stopped and collected without hanging.
    for _ in range(3):
        it = refa.generate(PROMPTS[0], max_tokens=500, ignore_eos=True, stream=True)
        next(it)
        del it


def test_chat_messages_use_the_template(refa):
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    ids = refa.tokenizer.apply_chat_template(messages, tokenize=True)
    a = refa.generate(messages, max_tokens=16, temperature=0)
    b = refa.generate(ids, max_tokens=16, temperature=0)
    assert a == b
    assert refa.last_stats["prompt_tokens"] == len(ids)


def test_logits_equal_the_cpp_session(refa):
    ids = refa.tokenizer.encode(PROMPTS[0])
    lg = refa.logits(ids)
    assert lg.shape == (len(ids), refa.vocab_size) and lg.dtype == np.float32
    s = refa.session()
    assert np.array_equal(s.forward(ids, all_logits=True), lg)
    # Incremental decoding with the KV cache agrees with the full forward pass (fp32 rounding).
    s.reset()
    last = s.forward(ids[:3])
    np.testing.assert_allclose(last, lg[2], rtol=0, atol=1e-4 * np.abs(lg[2]).max())
    for k in range(3, len(ids)):
        row = s.forward([ids[k]])
        np.testing.assert_allclose(row, lg[k], rtol=0, atol=1e-4 * np.abs(lg[k]).max())
    assert s.position == len(ids)


def test_batched_logits_equal_one_by_one(refa):
    seqs = [refa.tokenizer.encode(p) for p in PROMPTS]
    batch = refa.logits(seqs)
    assert isinstance(batch, list) and len(batch) == 3
    base = batch[0].base
    for s, b in zip(seqs, batch):
        alone = refa.logits(s)
        assert b.shape == alone.shape
        np.testing.assert_allclose(b, alone, rtol=0, atol=1e-5 * np.abs(alone).max())
        assert b.base is base  # views of one buffer: no copies
    # A 2-D array is a batch too.
    arr = np.array([seqs[0][:4], seqs[1][:4]], dtype=np.int64)
    two = refa.logits(arr)
    np.testing.assert_allclose(two[0], batch[0][:4], rtol=0, atol=1e-5 * np.abs(batch[0]).max())


def test_large_batches_run_in_steps(refa):
    # 3 x 900 positions: more than one engine step (2048 positions); same logits as one at a time.
    rng = np.random.default_rng(0)
    seqs = [rng.integers(0, refa.vocab_size, 900).tolist() for _ in range(3)]
    batch = refa.logits(seqs)
    for s, b in zip(seqs, batch):
        alone = refa.logits(s)
        np.testing.assert_allclose(b, alone, rtol=0, atol=1e-5 * np.abs(alone).max())


def test_arrays_own_the_library_buffers(refa):
    # No copies: the arrays view the buffer the library wrote, owned by a capsule.
    a = refa.logits([1, 2, 3])
    assert type(a.base.base).__name__ == "PyCapsule"
    assert a.flags["C_CONTIGUOUS"]
    row = refa.session().forward([1, 2, 3])
    assert row.shape == (refa.vocab_size,) and type(row.base).__name__ == "PyCapsule"


def test_score(refa):
    text = "The history of the city is long."
    ids = refa.tokenizer.encode(text)
    lp = refa.score(text)
    assert lp.shape == (len(ids) - 1,) and lp.dtype == np.float64
    lg = refa.logits(ids).astype(np.float64)
    logz = np.log(np.exp(lg - lg.max(axis=1, keepdims=True)).sum(axis=1)) + lg.max(axis=1)
    expect = lg[np.arange(len(ids) - 1), ids[1:]] - logz[:-1]
    np.testing.assert_allclose(lp, expect, rtol=1e-9, atol=1e-9)
    both = refa.score([text, "Water"])
    assert len(both) == 2 and np.array_equal(both[0], lp)
    assert np.all(lp <= 0)


def test_errors(refa, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        upg.Model.load(tmp_path / "nope")
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(upg.Error) as e:
        upg.Model.load(tmp_path)
    assert isinstance(e.value, ValueError)
    assert str(tmp_path) in str(e.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(upg.Error, match="config.json"):
        upg.Model.load(empty)
    with pytest.raises(upg.Error, match="cuda"):
        upg.Model.load(refa.path, device="cuda")
    with pytest.raises(ValueError, match="device"):
        upg.Model.load(refa.path, device="tpu")
    with pytest.raises(ValueError, match="threads"):
        upg.Model.load(refa.path, threads=0)
    with pytest.raises(upg.Error, match="out of range"):
        refa.logits([1, 2, 10**6])
    with pytest.raises(upg.Error, match="empty"):
        refa.logits([[1, 2], []])
    with pytest.raises(TypeError, match="token ids"):
        refa.logits("hello")
    with pytest.raises(upg.Error, match="outside the vocabulary"):
        refa.tokenizer.decode([10**6])
    with pytest.raises(ValueError, match="stop"):
        refa.generate("x", stop=[""])
    with pytest.raises(ValueError, match="max_tokens"):
        refa.generate("x", max_tokens=-1)
    with pytest.raises(ValueError, match="top_p"):
        refa.generate("x", top_p=7)
    with pytest.raises(ValueError, match="temperature"):
        refa.generate("x", temperature=-1, stream=True)
    with pytest.raises(TypeError, match="top_k"):
        refa.generate("x", top_k=1.5)
    with pytest.raises(ValueError, match="kv_type"):
        refa.generate("x", kv_type="f8")
    with pytest.raises(TypeError, match="prompt"):
        refa.generate(3.5)
    with pytest.raises(upg.Error, match="context"):
        refa.generate([1] * (refa.max_context + 1))
    with pytest.raises(upg.Error, match="context"):
        refa.generate([1] * 10, max_context=5, stream=True)
    with pytest.raises(upg.Error, match="tokenizer.json"):
        upg.Model.load(str(GOLDEN / "mistral_gqa_bf16")).generate([{"role": "user", "content": "x"}])


def test_model_without_tokenizer():
    # The golden models have weights and configs only: logits of token ids work, text does not.
    m = upg.Model.load(str(GOLDEN / "phi3_su_short"))
    assert m.tokenizer is None
    assert m.logits([1, 2, 3]).shape == (3, m.vocab_size)
    with pytest.raises(upg.Error, match="tokenizer.json"):
        m.generate("hello")
    with pytest.raises(upg.Error, match="tokenizer.json"):
        m.generate([1, 2, 3], max_tokens=2)
    with pytest.raises(upg.Error, match="tokenizer.json"):
        m.score("hello")


def _interrupt_after(seconds):
    t = threading.Timer(seconds, lambda: os.kill(os.getpid(), signal.SIGINT))
    t.start()
    return t


def test_ctrl_c_interrupts_generate(refa):
    t0 = time.monotonic()
    timer = _interrupt_after(0.5)
    with pytest.raises(KeyboardInterrupt):
        refa.generate(PROMPTS[0], max_tokens=2000, ignore_eos=True, temperature=0)
    timer.join()
    assert time.monotonic() - t0 < 5
    # The model still works afterwards.
    assert refa.generate(PROMPTS[0], max_tokens=4, temperature=0)


def test_ctrl_c_interrupts_a_stream(refa):
    timer = _interrupt_after(0.5)
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        for _ in refa.generate(PROMPTS[0], max_tokens=2000, ignore_eos=True, temperature=0, stream=True):
            time.sleep(0.01)
    timer.join()
    assert time.monotonic() - t0 < 5


def test_gil_is_released(refa):
    # While one thread generates, another keeps running Python code.
    ticks = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(time.monotonic())
            time.sleep(0.005)

    th = threading.Thread(target=ticker)
    th.start()
    refa.generate(PROMPTS[0], max_tokens=200, ignore_eos=True, temperature=0)
    stop.set()
    th.join()
    assert len(ticks) > 10


def test_one_model_from_several_threads(refa):
    want = [refa.generate(p, max_tokens=24, temperature=0) for p in PROMPTS]
    got = [None] * len(PROMPTS)

    def work(i):
        got[i] = refa.generate(PROMPTS[i], max_tokens=24, temperature=0)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(PROMPTS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == want


def test_threads_argument(refa_path):
    m = upg.Model.load(refa_path, threads=1)
    ids = m.tokenizer.encode(PROMPTS[2])
    m2 = upg.Model.load(refa_path)
    np.testing.assert_allclose(m.logits(ids), m2.logits(ids), rtol=0, atol=1e-5)


def test_upg_file_model(refa_int8, upg_bin):
    m = upg.Model.load(refa_int8)
    assert m.format == "upg"
    assert set(m.codecs.values()) >= {"int8"}
    assert 8 < m.bits_per_weight < 9
    cli = run([upg_bin, "run", refa_int8, "-p", PROMPTS[0], "-n", "16", "--temp", "0"]).stdout
    assert cli == PROMPTS[0] + m.generate(PROMPTS[0], max_tokens=16, temperature=0) + "\n"
