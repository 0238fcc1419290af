"""upg.eval: the evaluations of ``upg eval``, returning the dicts the command line writes with --json.

Each function takes a model (an :class:`upg.Model`, or a path, loaded for the call) and runs the
same library code as the command line, so ``upg.eval.mmlu(path, limit=5)`` equals the JSON of
``upg eval mmlu PATH --limit 5 --json OUT`` (apart from timings). Data files default to the shared
data folder (``../shared/data``, or $UPG_DATA_DIR) when it holds them.

Functions: :func:`perplexity`, :func:`kld`, :func:`task` (any multiple-choice task by name) and one
per task: :func:`mmlu`, :func:`hellaswag`, :func:`arc_challenge`, :func:`sst2`, :func:`rte`,
:func:`mrpc`, :func:`qnli`, :func:`cola`; :func:`humaneval` (runs model-written code in a sandbox).

`progress`: True shows a progress line on stderr, a callable receives (done, total, status), False
shows nothing. Ctrl-C stops an evaluation and raises KeyboardInterrupt.
"""

import os
import warnings

from . import _upg
from ._util import ProgressPrinter, check_int, check_number, existing_path, fspath

__all__ = ["perplexity", "kld", "task", "tasks", "humaneval", "mmlu", "hellaswag", "arc_challenge", "sst2",
           "rte", "mrpc", "qnli", "cola"]


def _model(model, threads=None):
    """(native model, label): an upg.Model as is (labelled with its path), or a path loaded now."""
    from .model import Model

    if isinstance(model, Model):
        return model._m, model.path
    path = fspath(model, "model")
    return Model.load(path, threads=threads)._m, path


def _default_data(rel, what):
    root = _upg.shared_data_dir()
    p = os.path.join(root, rel) if root and rel else ""
    if not p or not os.path.exists(p):
        where = f"../shared/data/{rel}" if rel else "location"
        raise ValueError(f"{what}: no data: give data=PATH (the default {where} is absent)")
    return p


def _progress(progress, label):
    """(callback for the library, printer to close or None)."""
    if progress is True:
        printer = ProgressPrinter()
        return (lambda done, total, status: printer(f"[{label}]", done, total, status)), printer
    if callable(progress):
        return progress, None
    if progress is False or progress is None:
        return None, None
    raise TypeError("progress must be True, False or a callable")


def _run(label, progress, fn, *args):
    callback, printer = _progress(progress, label)
    try:
        return fn(*args, callback)
    finally:
        if printer:
            printer.close()


def _text_args(text_file, text):
    if text_file is not None and text is not None:
        raise ValueError("give either text_file (a path) or text (the text itself), not both")
    if text is not None:
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        return None, text, "<text>"
    if text_file is None:
        path = _default_data("text/wiki.test.raw", "text")
    else:
        path = existing_path(text_file, "text file")
    return path, None, path


def perplexity(model, text_file=None, *, text=None, ctx=512, method="hf", chunks=None, threads=None, progress=True):
    """Perplexity of a text, as ``upg eval ppl MODEL --text FILE [--ctx C] [--method M] [--chunks N]``.

    `text_file`: a text file (.bz2 is decompressed; default ../shared/data/text/wiki.test.raw), or
    `text`: the text itself. `method`: "hf" (non-overlapping windows of `ctx` tokens, tokens 2..ctx
    of each scored; refA reference.json's method) or "llama.cpp" (llama-perplexity's windows: BOS,
    second half of each window scored). `chunks`: windows at most.

    Returns the dict of ``--json``: task, method, model, text, ctx, text_tokens, tokens, nll_mean,
    ppl, complete, and windows / windows_total (hf) or bos, chunks, chunks_total, nll_stderr,
    ppl_err (llama.cpp)."""
    if method not in ("hf", "llama.cpp"):
        raise ValueError(f"method must be 'hf' or 'llama.cpp', got {method!r}")
    ctx = check_int(ctx, "ctx", minimum=2)
    chunks = -1 if chunks is None else check_int(chunks, "chunks", minimum=0)
    m, label = _model(model, threads)
    path, raw, text_label = _text_args(text_file, text)
    return _run("ppl", progress, _upg.eval_ppl, m, label, path, raw, text_label, method, ctx, chunks)


def kld(base, model, text_file=None, *, text=None, ctx=512, chunks=None, threads=None, progress=True):
    """KL divergence of `model` (e.g. compressed) from `base` (the original), with llama.cpp's
    ``--kl-divergence`` statistics, as ``upg eval kld --base BASE --model MODEL --text FILE``.

    Returns the dict of ``--json``: task, base, model, text, ctx, chunks, chunks_total, tokens,
    complete, kld_mean, kld_median, kld_p90/p99/p999, kld_max/min, ppl, ppl_base, ln_ppl_ratio,
    ppl_ratio, ppl_diff, ln_ppl_correlation, p_diff_mean/rms/max/min and same_top (fractions;
    ``{"value", "err"}`` pairs where there is an uncertainty)."""
    ctx = check_int(ctx, "ctx", minimum=4)
    chunks = -1 if chunks is None else check_int(chunks, "chunks", minimum=0)
    b, base_label = _model(base, threads)
    m, label = _model(model, threads)
    path, raw, text_label = _text_args(text_file, text)
    return _run("kld", progress, _upg.eval_kld, b, base_label, m, label, path, raw, text_label, ctx, chunks)


def tasks():
    """The multiple-choice tasks: a list of dicts (name, help, default_data, default_shots)."""
    return _upg.mc_tasks()


def task(name, model, data=None, *, limit=None, shots=None, bos=False, max_length=0, threads=None, progress=True):
    """Multiple-choice task `name` (see :func:`tasks`), scored by log-likelihood as
    ``upg eval NAME MODEL [--data D] [--limit N] [--shots K] [--bos] [--max-length L]``.

    `data`: the data file or folder (default: the task's file in ../shared/data). `limit`: items
    at most (MMLU: per subject). `shots`: few-shot examples (MMLU only; default 5). `bos`: add the
    tokenizer's BOS to prompts. `max_length`: context positions (0: the model's).

    Returns the dict of ``--json``: config, data, limit, items_total, complete, summary (acc with
    value, stderr, n, correct; acc_norm, f1, mcc where the task reports them; MMLU: subjects,
    categories, macro, micro) and items (per item: id, gold, pred, log-likelihoods, ...)."""
    info = next((t for t in _upg.mc_tasks() if t["name"] == name), None)
    if info is None:
        known = ", ".join(t["name"] for t in _upg.mc_tasks())
        raise ValueError(f"unknown evaluation task {name!r} (known: {known}; see also perplexity, kld, humaneval)")
    limit = -1 if limit is None else check_int(limit, "limit", minimum=0)
    shots = -1 if shots is None else check_int(shots, "shots", minimum=0)
    max_length = check_int(max_length, "max_length", minimum=0)
    path = _default_data(info["default_data"], name) if data is None else existing_path(data, f"{name} data")
    m, label = _model(model, threads)
    return _run(name, progress, _upg.eval_task, name, m, label, path, limit, shots, bool(bos), max_length)


def _task_function(name):
    def run(model, data=None, *, limit=None, shots=None, bos=False, max_length=0, threads=None, progress=True):
        return task(name, model, data, limit=limit, shots=shots, bos=bos, max_length=max_length, threads=threads,
                    progress=progress)

    run.__name__ = run.__qualname__ = name
    run.__doc__ = f"task({name!r}, model, ...): see :func:`task`."
    return run


mmlu = _task_function("mmlu")
hellaswag = _task_function("hellaswag")
arc_challenge = _task_function("arc_challenge")
sst2 = _task_function("sst2")
rte = _task_function("rte")
mrpc = _task_function("mrpc")
qnli = _task_function("qnli")
cola = _task_function("cola")


def humaneval(model, data=None, *, limit=None, max_new_tokens=512, timeout=3.0, bos=False, max_length=0,
              threads=None, progress=True, unsafe_no_sandbox=False):
    """HumanEval pass@1 with greedy completions, as ``upg eval humaneval MODEL [--data F] [--limit N]
    [--max-new-tokens T] [--timeout S] [--bos] [--max-length L] [--unsafe-no-sandbox]``: each
    completion's unit tests run in the sandbox of the command line (unprivileged, no capabilities,
    seccomp, no network, read-only files but a size-limited tmpfs, limits). When the system does not
    permit the whole sandbox, :class:`upg.Error` is raised, naming what is missing, before any
    program runs, unless ``unsafe_no_sandbox=True`` (then a RuntimeWarning says what is missing).

    Returns the dict of ``--json``: config, data, limit, items_total, complete, summary (pass@1 with
    value, stderr, n, correct; n; timed_out), isolation and items (per problem: task_id, passed,
    result, completion, ...)."""
    limit = -1 if limit is None else check_int(limit, "limit", minimum=0)
    max_new_tokens = check_int(max_new_tokens, "max_new_tokens", minimum=1)
    timeout = check_number(timeout, "timeout", allow_none=False)
    if not timeout > 0:
        raise ValueError(f"timeout must be positive, got {timeout}")
    max_length = check_int(max_length, "max_length", minimum=0)
    path = (_default_data("eval/humaneval/HumanEval.jsonl.gz", "humaneval") if data is None
            else existing_path(data, "humaneval data"))
    m, label = _model(model, threads)
    result = _run("humaneval", progress, _upg.eval_humaneval, m, label, path, limit, max_new_tokens, timeout,
                  bool(bos), max_length, bool(unsafe_no_sandbox))
    iso = result.get("isolation")
    if iso and not iso.get("complete", False):
        warnings.warn("the test sandbox is weaker than intended on this system: " + "; ".join(iso["notes"]),
                      RuntimeWarning, stacklevel=2)
    return result
