"""UPG from Python: load, run, compress and evaluate language models.

The same C++ library as the ``upg`` command line (no second implementation), compiled into the
extension module ``upg._upg``::

    import upg
    model = upg.Model.load("path/to/model")          # Hugging Face directory or .upg file
    print(model.generate("The history of the city", max_tokens=32, temperature=0))
    for piece in model.generate([{"role": "user", "content": "Hi"}], stream=True):
        print(piece, end="", flush=True)
    logits = model.logits(model.tokenizer.encode("Hello"))   # numpy (tokens, vocab)
    report = upg.convert("hf_dir", "model.upg", bpw=3.2, calib="calib.txt")
    print(upg.info("model.upg")["bits_per_weight"])
    print(upg.eval.perplexity(model, "wiki.test.raw")["ppl"])

Errors the library reports (a missing tensor, a malformed file, an unreachable budget, a bad
argument) are raised as :class:`upg.Error`, a :class:`ValueError`, with the library's message;
paths that do not exist raise :class:`FileNotFoundError`. Compute runs without the GIL, so other
Python threads keep running; Ctrl-C stops a generation, conversion or evaluation and raises
:class:`KeyboardInterrupt`.
"""

from . import _upg

__version__ = _upg.__version__

Error = _upg.Error
Error.__module__ = "upg"
Error.__doc__ = (
    "An error reported by UPG's library (bad file, bad tensor, bad argument, ...), with its message "
    "unchanged. A subclass of ValueError."
)

from .model import Model, Session, Tokenizer  # noqa: E402
from .convert import convert, info  # noqa: E402
from . import eval  # noqa: E402  (upg.eval: perplexity, kld, mmlu, ...)

__all__ = ["Error", "Model", "Session", "Tokenizer", "convert", "info", "eval", "__version__"]
