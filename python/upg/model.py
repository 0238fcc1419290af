"""upg.Model, upg.Tokenizer and upg.Session: a loaded model, its tokenizer, and step-by-step decoding."""

import math
import operator

from . import _upg
from ._util import check_int, check_number, existing_path, threads_arg

_KV_TYPES = ("f32", "bf16", "f16", "q8")


def _token_list(seq, what):
    """A sequence of token ids (list, tuple, 1-D numpy array) as a list of Python ints."""
    if isinstance(seq, (str, bytes)):
        raise TypeError(f"{what} must be a sequence of token ids (ints), got {type(seq).__name__}")
    try:
        return [operator.index(t) for t in seq]
    except TypeError:
        raise TypeError(f"{what} must be a sequence of token ids (ints)") from None


def _is_batch(token_ids):
    """True when token_ids is a batch (a sequence of sequences / a 2-D array) rather than one sequence."""
    ndim = getattr(token_ids, "ndim", None)
    if ndim is not None:
        return ndim == 2
    if isinstance(token_ids, (str, bytes)):
        return False
    try:
        first = next(iter(token_ids))
    except StopIteration:
        return False
    except TypeError:
        raise TypeError(f"token ids must be a sequence of ints, got {type(token_ids).__name__}") from None
    return not hasattr(type(first), "__index__")


def _check_sampling(temperature, top_p, min_p, repeat_penalty):
    """The sampler's ranges, checked with the Python argument names (None: not given)."""
    if temperature is not None and not (math.isfinite(temperature) and temperature >= 0):
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if min_p is not None and not 0 <= min_p < 1:
        raise ValueError(f"min_p must be in [0, 1), got {min_p}")
    if repeat_penalty is not None and not (math.isfinite(repeat_penalty) and repeat_penalty > 0):
        raise ValueError(f"repeat_penalty must be > 0, got {repeat_penalty}")


def _is_messages(prompt):
    return isinstance(prompt, (list, tuple)) and len(prompt) > 0 and all(isinstance(m, dict) for m in prompt)


class Tokenizer:
    """A model's tokenizer (its tokenizer.json, tokenizer_config.json and generation_config.json)
    and chat template, as the command line uses them. Get it from :attr:`Model.tokenizer`."""

    def __init__(self, native):
        self._t = native

    def encode(self, text, add_special_tokens=True):
        """Token ids of `text` (str). With `add_special_tokens` the tokenizer's BOS (and EOS, if its
        post-processor adds one) are added, as transformers' ``tokenizer(text)`` does. Special tokens
        written in the text (``"<|user|>"``) are recognised."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        return self._t.encode(text, bool(add_special_tokens))

    def decode(self, ids, skip_special_tokens=False):
        """The text of token ids (a str; bytes that are not valid UTF-8 become U+FFFD). Raises
        upg.Error for an id outside the vocabulary."""
        return self._t.decode(_token_list(ids, "ids"), bool(skip_special_tokens))

    def apply_chat_template(self, messages, add_generation_prompt=True, tokenize=False, **kwargs):
        """Renders chat `messages` (a list of {"role": ..., "content": ...} dicts) with the model's
        chat template, as transformers' ``apply_chat_template`` does: the template sees `messages`,
        `add_generation_prompt`, `bos_token`, `eos_token` and any extra keyword (``tools=...``).
        Returns the prompt text, or its token ids (without adding BOS again) when `tokenize` is true.
        Raises upg.Error when the model has no chat template or the template raises an error."""
        if not isinstance(messages, (list, tuple)) or not all(isinstance(m, dict) for m in messages):
            raise TypeError("messages must be a list of dicts such as {'role': 'user', 'content': 'Hi'}")
        text = self._t.apply_chat_template(list(messages), bool(add_generation_prompt), kwargs or None)
        return self._t.encode(text, False) if tokenize else text

    def token_to_id(self, token):
        """Id of a token as written in tokenizer.json ("<|endoftext|>", "▁the"), or None."""
        return self._t.token_to_id(token)

    def token_bytes(self, token_id):
        """The raw bytes token `token_id` stands for."""
        return self._t.token_bytes(operator.index(token_id))

    def is_special(self, token_id):
        """Whether `token_id` is a special added token (skipped by decode(..., skip_special_tokens=True))."""
        return self._t.is_special(operator.index(token_id))

    @property
    def vocab_size(self):
        """1 + the largest token id of the vocabulary and the added tokens."""
        return self._t.vocab_size

    @property
    def bos_id(self):
        """The BOS token id, or None."""
        return self._t.bos_id

    @property
    def add_bos(self):
        """Whether encode(text) starts with BOS."""
        return self._t.add_bos

    @property
    def eos_ids(self):
        """Token ids that end generation (tokenizer_config's eos_token, then generation_config's)."""
        return list(self._t.eos_ids)

    @property
    def bos_token(self):
        """Text of the BOS token ("" when there is none)."""
        return self._t.bos_token

    @property
    def eos_token(self):
        """Text of the EOS token ("" when there is none)."""
        return self._t.eos_token

    @property
    def chat_template(self):
        """The chat template's source (chat_template.jinja or tokenizer_config.json's), or None."""
        return self._t.chat_template

    def __repr__(self):
        return f"<upg.Tokenizer vocab_size={self.vocab_size}>"


class Session:
    """One sequence with its own KV cache, for step-by-step use (the C++ ``upg::Session``): each
    :meth:`forward` appends tokens at the next positions and returns their logits. Not
    thread-safe: one Session per thread (a Model can serve many). Get one from :meth:`Model.session`."""

    def __init__(self, model, max_context=None, kv_type=None):
        if not isinstance(model, Model):
            raise TypeError(f"model must be an upg.Model, got {type(model).__name__}")
        if kv_type is not None and kv_type not in _KV_TYPES:
            raise ValueError(f"kv_type must be one of {', '.join(_KV_TYPES)}, got {kv_type!r}")
        ctx = 0 if max_context is None else check_int(max_context, "max_context", minimum=1)
        self._s = _upg.Session(model._m, ctx, kv_type or "")

    def forward(self, token_ids, all_logits=False):
        """Runs `token_ids` at positions position .. position + n - 1 and returns the logits as a
        float32 numpy array: (n, vocab) when `all_logits`, else the last token's (vocab,). The array
        owns the buffer the library wrote (no copy)."""
        ids = _token_list(token_ids, "token_ids")
        return self._s.forward(ids, bool(all_logits))

    @property
    def position(self):
        """Positions the sequence holds (the next token's position)."""
        return self._s.position

    @property
    def max_context(self):
        """Positions this session may hold."""
        return self._s.max_context

    def reset(self):
        """Forgets every position: the next forward starts at 0."""
        self._s.reset()

    def truncate(self, position):
        """Keeps the first `position` positions of the cache."""
        self._s.truncate(check_int(position, "position", minimum=0))


class Model:
    """A language model: a Hugging Face directory (config.json, safetensors, tokenizer.json) or a
    UPG file, memory-mapped and run compressed as stored. Load with :meth:`Model.load`.

    A Model is immutable and may be used from several Python threads at once (each call has its
    own KV cache); calls release the GIL while they compute.
    """

    def __init__(self, native):
        self._m = native
        t = native.tokenizer()
        self._tokenizer = Tokenizer(t) if t is not None else None
        self.last_stats = None
        """Statistics of the last generate() call that finished (dict: prompt_tokens,
        generated_tokens, stop_reason, token_ids, prompt_tokens_per_second, ...), or None."""

    @classmethod
    def load(cls, path, device="cpu", threads=None):
        """Loads the model at `path`: a Hugging Face model directory or a UPG model (a .upg file,
        a .upg.index.json or a directory holding one).

        `device`: where the model runs: "cpu", "cuda" (= "cuda:0"), "cuda:N", or "auto" (the first
        GPU when there is one, else the CPU); a device this build or machine lacks raises upg.Error
        saying why. `threads`: worker threads for this model's calls (its own thread pool; None: all
        cores, or OMP_NUM_THREADS).

        Raises FileNotFoundError when `path` does not exist and upg.Error, with the library's
        message naming the file, field or tensor, when it is not a loadable model."""
        p = existing_path(path, "model path")
        if not isinstance(device, str):
            raise TypeError(f"device must be a string such as 'cpu' or 'cuda:0', got {device!r}")
        return cls(_upg.Model.load(p, threads_arg(threads), device))

    # ---- what the model is ----
    @property
    def path(self):
        """The path the model was loaded from, as given."""
        return self._m.path

    @property
    def format(self):
        """"hf" (Hugging Face directory) or "upg" (UPG file)."""
        return self._m.format

    @property
    def config(self):
        """The model's config.json, as a dict."""
        return self._m.config

    @property
    def architecture(self):
        """The architecture (config.json's "architectures"[0]), e.g. "Phi3ForCausalLM"."""
        return self._m.architecture

    @property
    def model_type(self):
        """config.json's "model_type", e.g. "phi3"."""
        return self._m.model_type

    @property
    def parameters(self):
        """Number of parameters (every tensor, norms and biases included)."""
        return self._m.parameters

    @property
    def bits_per_weight(self):
        """Stored bits per weight of the weight matrices: 8 x their stored bytes / their weights
        (norms and biases not counted; a tied embedding counted once). For the whole file's figure,
        see upg.info(path)["bits_per_weight"]."""
        return 8.0 * self._m.weight_bytes / max(self._m.matrix_parameters, 1)

    @property
    def codecs(self):
        """{tensor name: codec} for every tensor: the codec stored in a UPG file ("codebook",
        "int8", "bf16", ...) or the safetensors dtype of a Hugging Face checkpoint ("bf16")."""
        return self._m.codecs()

    @property
    def vocab_size(self):
        """Rows of the logits (config.json's vocab_size)."""
        return self._m.vocab_size

    @property
    def max_context(self):
        """The model's context length (max_position_embeddings)."""
        return self._m.max_context

    @property
    def tokenizer(self):
        """The model's :class:`Tokenizer` (with its chat template), or None when the model has no
        tokenizer.json (then only token ids can be given: logits(), generate(ids))."""
        return self._tokenizer

    def _tok(self):
        if self._tokenizer is None:
            raise _upg.Error(f"model '{self.path}' has no tokenizer.json: give token ids instead of text")
        return self._tokenizer

    @property
    def generation_config(self):
        """The model's generation_config.json as a dict, or None."""
        return self._m.generation_config()

    def __repr__(self):
        return (f"<upg.Model {self.path!r}: {self.architecture}, {self.parameters:,} parameters, "
                f"{self.bits_per_weight:.2f} bits/weight>")

    # ---- running it ----
    def session(self, max_context=None, kv_type=None):
        """A new :class:`Session` on this model (max_context: positions it may hold, default the
        model's context; kv_type: "f32" (exact), "bf16", "f16" or "q8"; None: f32 on the CPU,
        bf16 on a GPU, whose attention reads bf16 only)."""
        return Session(self, max_context, kv_type)

    def _prompt_ids(self, prompt, add_special_tokens):
        if isinstance(prompt, str):
            tok = self._tok()
            ids = tok.encode(prompt, add_special_tokens)
            if not ids and tok.bos_id is not None:
                ids = [tok.bos_id]
            return ids
        if _is_messages(prompt):
            text = self._tok().apply_chat_template(prompt, add_generation_prompt=True)
            return self._tok().encode(text, False)
        if isinstance(prompt, (list, tuple)) or getattr(prompt, "ndim", None) == 1:
            return _token_list(prompt, "prompt")
        raise TypeError("prompt must be a str, a list of chat messages ({'role': ..., 'content': ...}) "
                        f"or a list of token ids, got {type(prompt).__name__}")

    def generate(self, prompt, *, max_tokens=128, temperature=None, top_p=None, top_k=None, min_p=None,
                 repeat_penalty=None, repeat_last_n=None, stop=None, seed=None, stream=False,
                 ignore_eos=False, kv_type="bf16", max_context=None, add_special_tokens=True):
        """Generates a continuation of `prompt`, as ``upg run`` does.

        `prompt`: a str (tokenized with the BOS the tokenizer adds, unless add_special_tokens is
        false), a list of chat messages ``[{"role": "user", "content": "..."}]`` (rendered with the
        model's chat template and a generation prompt, as ``upg chat`` does), or a list of token ids.

        Sampling: settings not given come from the model's generation_config.json (as transformers
        reads it), else llama.cpp's defaults (temperature 0.8, top_k 40, top_p 0.95, min_p 0.05).
        temperature=0 is greedy decoding. `stop`: a str or list of str; generation ends before the
        first of them. `seed`: the sampler's seed (default 0). `max_tokens`: tokens to generate at
        most. Generation also ends at an end-of-sequence token (unless ignore_eos) or when the
        context is full. `kv_type`: the KV cache's row type ("bf16" as ``upg run``; "f32" exact).

        Returns the generated text (a str, without the prompt), or with stream=True an iterator over
        pieces of text as they are produced (the same text, joined). Statistics of the call end up
        in :attr:`last_stats`. Ctrl-C stops the generation and raises KeyboardInterrupt; leaving a
        streaming loop early stops the generation at its next token."""
        ids = self._prompt_ids(prompt, add_special_tokens)
        if not ids:
            raise ValueError("the prompt is empty and the model has no BOS token to start from")
        max_tokens = check_int(max_tokens, "max_tokens", minimum=0)
        if stop is None:
            stop = []
        elif isinstance(stop, str):
            stop = [stop]
        else:
            stop = list(stop)
        for s in stop:
            if not isinstance(s, str) or not s:
                raise ValueError(f"stop must be a non-empty str or a list of them, got {s!r}")
        if kv_type not in _KV_TYPES:
            raise ValueError(f"kv_type must be one of {', '.join(_KV_TYPES)}, got {kv_type!r}")
        args = dict(
            max_tokens=max_tokens,
            temperature=check_number(temperature, "temperature"),
            top_p=check_number(top_p, "top_p"),
            top_k=check_int(top_k, "top_k", minimum=0, allow_none=True),
            min_p=check_number(min_p, "min_p"),
            repeat_penalty=check_number(repeat_penalty, "repeat_penalty"),
            repeat_last_n=check_int(repeat_last_n, "repeat_last_n", minimum=-1, allow_none=True),
            seed=check_int(seed, "seed", minimum=0, allow_none=True),
            stop=stop,
            ignore_eos=bool(ignore_eos),
            kv_type=kv_type,
            max_context=0 if max_context is None else check_int(max_context, "max_context", minimum=1),
        )
        _check_sampling(args["temperature"], args["top_p"], args["min_p"], args["repeat_penalty"])
        if stream:
            return _Stream(self, self._m.generate(ids, stream=True, **args))
        text, stats = self._m.generate(ids, stream=False, **args)
        self.last_stats = stats
        return text

    def logits(self, token_ids):
        """Logits at every position of token sequences, run from an empty cache in fp32 (the same
        forward pass as the C++ Session's; on a GPU with bf16 activations and cache).

        `token_ids`: one sequence (a list of ints or a 1-D array) -> a float32 numpy array
        (len, vocab); several sequences (a list of lists, or a 2-D array) -> a list of such arrays,
        computed together in one batch (one forward step for up to 2048 positions in all, steps of
        2048 beyond). The arrays are views of one buffer the library wrote (no copies)."""
        if _is_batch(token_ids):
            seqs = [_token_list(s, f"token_ids[{i}]") for i, s in enumerate(token_ids)]
            if not seqs:
                raise ValueError("token_ids is an empty batch")
            return self._m.logits(seqs)
        return self._m.logits([_token_list(token_ids, "token_ids")])[0]

    def score(self, text, add_special_tokens=True):
        """Log-probabilities of a text under the model: with ``ids = tokenizer.encode(text)``, a
        float64 numpy array of len(ids) - 1 values, element i = log p(ids[i + 1] | ids[:i + 1])
        (natural log). Sum it for the text's log-likelihood. `text` may be a list of str: a list of
        arrays, computed in one batch. Token id lists are accepted in place of text."""
        if isinstance(text, str):
            items, single = [text], True
        elif isinstance(text, (list, tuple)) and text and all(isinstance(t, str) for t in text):
            items, single = list(text), False
        elif _is_batch(text):
            items, single = list(text), False
        else:
            items, single = [text], True
        seqs = []
        for i, t in enumerate(items):
            if isinstance(t, str):
                ids = self._tok().encode(t, add_special_tokens)
            else:
                ids = _token_list(t, f"text[{i}]")
            if not ids:
                raise ValueError(f"text {i} has no tokens")
            seqs.append(ids)
        out = self._m.score(seqs)
        return out[0] if single else out


class _Stream:
    """Iterator returned by Model.generate(..., stream=True): pieces of text as they are produced."""

    def __init__(self, model, native):
        self._model = model
        self._native = native

    def __iter__(self):
        return self

    def __next__(self):
        try:
            return next(self._native)
        except StopIteration:
            self._model.last_stats = self._native.stats
            raise

    def close(self):
        """Stops the generation (at its next token)."""
        self._native.close()

    @property
    def stats(self):
        """The generation's statistics once it has ended, else None."""
        return self._native.stats

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        native = getattr(self, "_native", None)
        if native is not None:
            native.close()
