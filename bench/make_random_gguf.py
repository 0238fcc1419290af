#!/usr/bin/env python3
"""Write a random-weight F16 GGUF of a llama-architecture shape, for llama.cpp speed tests.

Needs llama.cpp's own gguf-py on PYTHONPATH (llama.cpp-b4747/gguf-py) and numpy; gguf-py also
imports sentencepiece and yaml (Debian: python3-numpy python3-sentencepiece python3-yaml).

The vocabulary / tokenizer metadata (tokenizer.ggml.*) is copied from an existing GGUF, e.g.
../shared/data/tokenizers/llama.cpp-vectors/ggml-vocab-llama-spm.gguf (32000 tokens), so that
llama.cpp loads the file. The shape comes from a Hugging Face config.json (--config) and/or the
flags below (flags win). Matrices are N(0, std^2) in F16, norm weights are 1 (F32, like
convert_hf_to_gguf.py writes them). Tensors are generated and written one at a time, so memory
stays at about one tensor.

Example (TinyLlama-1.1B shape):
  PYTHONPATH=llama.cpp-b4747/gguf-py /usr/bin/python3 bench/make_random_gguf.py \
      --vocab-gguf ../shared/data/tokenizers/llama.cpp-vectors/ggml-vocab-llama-spm.gguf \
      --hidden 2048 --layers 22 --intermediate 5632 --heads 32 --kv-heads 4 --vocab 32000 \
      -o tinyllama-random-f16.gguf
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

try:
    import gguf
except ImportError as e:  # pragma: no cover
    sys.exit(f"make_random_gguf.py: cannot import gguf ({e}); put llama.cpp's gguf-py on PYTHONPATH "
             "and install python3-numpy python3-sentencepiece python3-yaml")


def decode_field(field):
    """Value of a ReaderField as plain Python (same logic as gguf-py's gguf_new_metadata.py)."""
    main_type = field.types[0]
    if main_type == gguf.GGUFValueType.ARRAY:
        sub_type = field.types[-1]
        if sub_type == gguf.GGUFValueType.STRING:
            return [bytes(field.parts[i]).decode("utf-8") for i in field.data]
        return [v for i in field.data for v in field.parts[i].tolist()]
    if main_type == gguf.GGUFValueType.STRING:
        return bytes(field.parts[-1]).decode("utf-8")
    return field.parts[-1][0].item()


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--output", required=True, help="output .gguf")
    ap.add_argument("--vocab-gguf", required=True, help="GGUF to copy tokenizer.ggml.* metadata from")
    ap.add_argument("--config", help="Hugging Face config.json giving the shape (flags override it)")
    ap.add_argument("--hidden", type=int, help="hidden_size (default 2048)")
    ap.add_argument("--layers", type=int, help="num_hidden_layers (default 22)")
    ap.add_argument("--intermediate", type=int, help="intermediate_size (default 5632)")
    ap.add_argument("--heads", type=int, help="num_attention_heads (default 32)")
    ap.add_argument("--kv-heads", type=int, help="num_key_value_heads (default: heads)")
    ap.add_argument("--head-dim", type=int, help="head_dim (default hidden/heads)")
    ap.add_argument("--vocab", type=int, help="vocab_size (default: token count of --vocab-gguf)")
    ap.add_argument("--ctx", type=int, help="max_position_embeddings (default 2048)")
    ap.add_argument("--rope-theta", type=float, help="rope_theta (default 10000)")
    ap.add_argument("--rms-eps", type=float, help="rms_norm_eps (default 1e-5)")
    ap.add_argument("--tied", action="store_true", default=None,
                    help="tie_word_embeddings: no output.weight (llama.cpp then uses token_embd)")
    ap.add_argument("--std", type=float, default=0.02, help="std of the random matrices (default 0.02)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default="random-llama", help="general.name")
    return ap.parse_args()


def main():
    a = parse_args()
    cfg = {}
    if a.config:
        with open(a.config) as f:
            cfg = json.load(f)

    def pick(flag, key, default):
        if flag is not None:
            return flag
        return cfg.get(key, default) if cfg.get(key) is not None else default

    hidden = pick(a.hidden, "hidden_size", 2048)
    layers = pick(a.layers, "num_hidden_layers", 22)
    inter = pick(a.intermediate, "intermediate_size", 5632)
    heads = pick(a.heads, "num_attention_heads", 32)
    kv_heads = pick(a.kv_heads, "num_key_value_heads", heads)
    head_dim = pick(a.head_dim, "head_dim", hidden // heads)
    ctx = pick(a.ctx, "max_position_embeddings", 2048)
    rope_theta = float(pick(a.rope_theta, "rope_theta", 10000.0))
    rms_eps = float(pick(a.rms_eps, "rms_norm_eps", 1e-5))
    tied = bool(pick(a.tied, "tie_word_embeddings", False))

    # tokenizer metadata from the vocabulary GGUF
    reader = gguf.GGUFReader(a.vocab_gguf)
    tok_fields = {name: f for name, f in reader.fields.items() if name.startswith("tokenizer.")}
    if "tokenizer.ggml.tokens" not in tok_fields:
        sys.exit(f"{a.vocab_gguf} has no tokenizer.ggml.tokens")
    n_tokens = len(tok_fields["tokenizer.ggml.tokens"].data)
    vocab = pick(a.vocab, "vocab_size", n_tokens)
    if vocab != n_tokens:
        sys.exit(f"vocab size {vocab} != {n_tokens} tokens in {a.vocab_gguf}; llama.cpp needs them equal")

    arch = gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA]  # "llama"
    w = gguf.GGUFWriter(a.output, arch)
    w.add_name(a.name)
    w.add_type(gguf.GGUFType.MODEL)
    # same keys as convert_hf_to_gguf.py's Model.set_gguf_parameters + LlamaModel
    w.add_vocab_size(vocab)
    w.add_context_length(ctx)
    w.add_embedding_length(hidden)
    w.add_block_count(layers)
    w.add_feed_forward_length(inter)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_rope_freq_base(rope_theta)
    w.add_layer_norm_rms_eps(rms_eps)
    w.add_rope_dimension_count(head_dim)
    if head_dim * heads != hidden:
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    for name, f in tok_fields.items():
        w.add_key_value(name, decode_field(f), f.types[0])

    # tensors: numpy shape is (rows, cols) = (out_features, in_features); gguf-py reverses it
    T = gguf.MODEL_TENSOR
    names = gguf.TENSOR_NAMES

    def tname(t, bid=None):
        return (names[t].format(bid=bid) if bid is not None else names[t]) + ".weight"

    plan = [(tname(T.TOKEN_EMBD), (vocab, hidden), "mat")]
    for b in range(layers):
        plan += [
            (tname(T.ATTN_NORM, b), (hidden,), "norm"),
            (tname(T.ATTN_Q, b), (heads * head_dim, hidden), "mat"),
            (tname(T.ATTN_K, b), (kv_heads * head_dim, hidden), "mat"),
            (tname(T.ATTN_V, b), (kv_heads * head_dim, hidden), "mat"),
            (tname(T.ATTN_OUT, b), (hidden, heads * head_dim), "mat"),
            (tname(T.FFN_NORM, b), (hidden,), "norm"),
            (tname(T.FFN_GATE, b), (inter, hidden), "mat"),
            (tname(T.FFN_DOWN, b), (hidden, inter), "mat"),
            (tname(T.FFN_UP, b), (inter, hidden), "mat"),
        ]
    plan.append((tname(T.OUTPUT_NORM), (hidden,), "norm"))
    if not tied:
        plan.append((tname(T.OUTPUT), (vocab, hidden), "mat"))

    n_params = 0
    for name, shape, kind in plan:
        dt = np.float32 if kind == "norm" else np.float16
        nbytes = int(np.prod(shape)) * np.dtype(dt).itemsize
        w.add_tensor_info(name, shape, np.dtype(dt), nbytes)
        n_params += int(np.prod(shape))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()

    rng = np.random.default_rng(a.seed)
    t0 = time.time()
    for name, shape, kind in plan:
        if kind == "norm":
            data = np.ones(shape, dtype=np.float32)
        else:
            x = rng.standard_normal(shape, dtype=np.float32)
            x *= a.std
            data = x.astype(np.float16)
            del x
        w.write_tensor_data(data)
    w.close()

    print(f"wrote {a.output}: llama, hidden {hidden}, layers {layers}, ffn {inter}, heads {heads}/{kv_heads}, "
          f"head_dim {head_dim}, vocab {vocab}, ctx {ctx}, tied {tied}; {n_params / 1e9:.3f} B parameters, "
          f"F16, {time.time() - t0:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
