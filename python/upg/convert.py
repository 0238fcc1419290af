"""upg.convert and upg.info: compress a Hugging Face checkpoint into a UPG file, and describe one."""

import os

from . import _upg
from ._util import ProgressPrinter, check_int, check_number, existing_path, fspath, threads_arg

_STAGES = {"calibrate": "calibrate", "probe": "probe    ", "measure": "measure  ", "write": "write    "}


def convert(hf_dir, out, *, bpw=None, calib=None, calib_text=None, codec=None, candidates=None, calib_tokens=16384,
            calib_window=256, probe_windows=8, gptq=True, threads=None, progress=True):
    """Compresses the Hugging Face checkpoint `hf_dir` into the UPG file `out`, as ``upg convert``
    does (same library code, same file).

    Either a budget, `bpw` (whole-file bits per parameter, 1 to 32), for which calibration text is
    required: `calib`, a text file (never the evaluation text), or `calib_text`, the text itself;
    the converter calibrates on the first `calib_tokens` tokens in windows of `calib_window`, runs
    GPTQ (unless gptq=False) and picks each tensor's encoding so that the file fits the budget,
    using the sensitivity probe (`probe_windows` windows per matrix; 0 turns it off).
    `candidates` (bpw only): the codec specs the allocation chooses from, instead of the
    converter's list of 19 (fewer candidates convert faster; the command line always uses all).
    Or one `codec` for every weight matrix (e.g. "codebook:bits=4,group=64", the default, or
    "int8"), with optional calibration.

    `progress`: True shows a progress line on stderr; a callable receives
    (stage, done, total, bytes_done, bytes_total, item) with stage "calibrate", "probe", "measure"
    or "write"; False shows nothing. Ctrl-C stops the conversion (raising KeyboardInterrupt) and
    leaves no output file behind.

    Returns a dict: path, files, file_bytes, parameters, bits_per_weight (whole file) and tensors
    (per tensor: name, codec, parameters, stored_bytes, bits_per_weight, rel_frobenius, rel_output,
    predicted_kl). Raises upg.Error with the library's message on any problem (missing tensor,
    unreachable budget, unwritable output)."""
    hf = existing_path(hf_dir, "Hugging Face model directory")
    out = fspath(out, "out")
    if bpw is not None:
        bpw = check_number(bpw, "bpw")
        if not 1 <= bpw <= 32:
            raise ValueError(f"bpw {bpw} is out of range (expected 1 to 32 bits per parameter)")
    if bpw is not None and codec is not None:
        raise ValueError("give either bpw (allocation under a budget) or codec (one codec), not both")
    if codec is not None and (not isinstance(codec, str) or not codec):
        raise ValueError(f"codec must be a codec spec such as 'codebook:bits=4,group=64', got {codec!r}")
    if candidates is not None:
        if bpw is None:
            raise ValueError("candidates are the choices of a bpw budget: give bpw too (or codec alone)")
        if isinstance(candidates, str) or not all(isinstance(c, str) and c for c in candidates) or not candidates:
            raise ValueError("candidates must be a non-empty list of codec specs such as "
                             "'codebook:bits=3,group=128,levels=gaussian,rotate=true'")
        candidates = list(candidates)
    if calib is not None and calib_text is not None:
        raise ValueError("give either calib (a text file) or calib_text (the text), not both")
    calib_name = ""
    text = None
    if calib is not None:
        path = existing_path(calib, "calibration file")
        with open(path, "rb") as f:
            text = f.read()
        calib_name = os.path.basename(path)
    elif calib_text is not None:
        if not isinstance(calib_text, (str, bytes)):
            raise TypeError(f"calib_text must be a str, got {type(calib_text).__name__}")
        text = calib_text.encode("utf-8", "surrogateescape") if isinstance(calib_text, str) else calib_text
    if bpw is not None and text is None:
        raise ValueError("bpw needs calibration text: give calib='file.txt' or calib_text='...' "
                         "(never the evaluation text)")
    calib_tokens = check_int(calib_tokens, "calib_tokens", minimum=1)
    calib_window = check_int(calib_window, "calib_window", minimum=2)
    probe_windows = check_int(probe_windows, "probe_windows", minimum=0)

    printer = None
    if progress is True:
        printer = ProgressPrinter()

        def callback(stage, done, total, nbytes, total_bytes, item):
            detail = item if len(item) <= 48 else "..." + item[-45:]
            printer(_STAGES.get(stage, stage), done, total, detail)
    elif callable(progress):
        callback = progress
    elif progress is False or progress is None:
        callback = None
    else:
        raise TypeError("progress must be True, False or a callable")
    try:
        return _upg.convert(hf, out, 0.0 if bpw is None else bpw, codec or "", candidates or [], text, calib_name, calib_tokens,
                            calib_window, probe_windows, bool(gptq), threads_arg(threads), callback)
    finally:
        if printer:
            printer.close()


def info(path):
    """What a UPG model holds, as ``upg info`` shows it, as a dict: path, format, format_version,
    files, sharded, architecture, converter (the converter's metadata: version, options, per-tensor
    choices), tensors (per tensor: name, shape, codec, params, bits_per_weight, stored_bytes, err =
    relative error recorded at conversion), codecs (per codec: tensors, parameters, stored_bytes,
    bits_per_weight) and the totals: parameters, stored_bytes, file_bytes, bits_per_weight (whole
    file: file bytes x 8 / parameters), ratio_vs_fp32, ratio_vs_bf16.

    `path`: a .upg file, a .upg.index.json or a directory holding one. Raises FileNotFoundError when
    it does not exist and upg.Error when it is not a valid UPG model."""
    return _upg.info(existing_path(path, "UPG model path"))
