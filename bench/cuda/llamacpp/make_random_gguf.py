#!/usr/bin/env python3
"""Write a random-weight GGUF of llama.cpp's "phi3" architecture with the shapes of a Hugging Face
Phi-3/Phi-4 config.json, every 2-D weight written directly in one quantized type (no F16 file, no
llama-quantize): each block is random bytes with its fp16 scale field(s) (d, and dmin where the
type has one) set to a small finite value, so no NaN/Inf can appear. For speed tests only: the
weights mean nothing, and the vocabulary is a synthetic SentencePiece-style ("llama") one of the
config's vocab_size (<unk>, <s>, </s>, the 256 byte tokens, filler tokens, <|endoftext|>).

Usage: make_random_gguf.py --config CONFIG.json --type Q3_K -o OUT.gguf
Needs numpy and llama.cpp's gguf-py (on PYTHONPATH, or in ./gguf-py or ../gguf-py beside this file).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import types

import numpy as np

here = os.path.dirname(os.path.abspath(__file__))
for cand in (os.path.join(here, "gguf-py"), os.path.join(here, "..", "gguf-py")):
    if os.path.isdir(os.path.join(cand, "gguf")):
        sys.path.insert(0, cand)
        break

# gguf/__init__.py imports its vocab and metadata modules, which import sentencepiece and yaml at
# module level; neither is used here, so stand-ins let it import on a host without them.
for mod, attrs in (("sentencepiece", {"SentencePieceProcessor": None}), ("yaml", {})):
    try:
        __import__(mod)
    except ImportError:
        stub = types.ModuleType(mod)
        for k, v in attrs.items():
            setattr(stub, k, v)
        sys.modules[mod] = stub

import gguf  # noqa: E402
from gguf import GGMLQuantizationType as QT, LlamaFileType as FT  # noqa: E402

# type name -> (ggml type, byte offsets of the fp16 scale fields in a block, value for them, file type)
# Layouts from ggml/src/ggml-common.h; the values keep a weight's magnitude around 1e-2.
TYPES = {
    "Q8_0":    (QT.Q8_0,    (0,),      2e-4, FT.MOSTLY_Q8_0),     # d, qs[32]                     34 B / 32
    "Q4_0":    (QT.Q4_0,    (0,),      2e-3, FT.MOSTLY_Q4_0),     # d, qs[16]                     18 B / 32
    "Q6_K":    (QT.Q6_K,    (208,),    1e-4, FT.MOSTLY_Q6_K),     # ql[128] qh[64] scales[16] d  210 B / 256
    "Q5_K":    (QT.Q5_K,    (0, 2),    5e-5, FT.MOSTLY_Q5_K_S),   # d dmin scales[12] qh[32] qs[128] 176 B
    "Q4_K":    (QT.Q4_K,    (0, 2),    1e-4, FT.MOSTLY_Q4_K_S),   # d dmin scales[12] qs[128]    144 B / 256
    "Q3_K":    (QT.Q3_K,    (108,),    2e-4, FT.MOSTLY_Q3_K_S),   # hmask[32] qs[64] scales[12] d 110 B / 256
    "Q2_K":    (QT.Q2_K,    (80, 82),  5e-4, FT.MOSTLY_Q2_K),     # scales[16] qs[64] d dmin      84 B / 256
    "IQ4_XS":  (QT.IQ4_XS,  (0,),      2e-4, FT.MOSTLY_IQ4_XS),   # d scales_h scales_l[4] qs[128] 136 B
    "IQ3_XXS": (QT.IQ3_XXS, (0,),      1e-4, FT.MOSTLY_IQ3_XXS),  # d qs[96]                     98 B / 256
}


def block_pool(qtype: QT, offsets, value: float, nbytes: int, seed: int) -> np.ndarray:
    """About nbytes of random blocks (uint8, shape [n_blocks, type_size]) with valid fp16 scales."""
    _, type_size = gguf.GGML_QUANT_SIZES[qtype]
    n_blocks = max(1, nbytes // type_size)
    rng = np.random.default_rng(seed)
    pool = np.frombuffer(bytearray(rng.bytes(n_blocks * type_size)), dtype=np.uint8).reshape(n_blocks, type_size)
    h = np.frombuffer(np.float16(value).tobytes(), dtype=np.uint8)
    for off in offsets:
        pool[:, off:off + 2] = h
    return pool


def vocab_tokens(n_vocab: int):
    if n_vocab < 4 + 256:
        sys.exit(f"vocab_size {n_vocab} < 260: no room for <unk>, <s>, </s>, the 256 byte tokens and <|endoftext|>")
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types_ = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL] + [gguf.TokenType.BYTE] * 256
    n_fill = n_vocab - len(tokens) - 1
    tokens += [f"\u2581t{i}" for i in range(n_fill)]
    types_ += [gguf.TokenType.NORMAL] * n_fill
    # llama-vocab.cpp looks "<|endoftext|>" up (and throws if absent) when general.name contains phi3/phi-3
    tokens.append("<|endoftext|>")
    types_.append(gguf.TokenType.CONTROL)
    return tokens, [0.0] * n_vocab, [int(t) for t in types_]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="Hugging Face config.json (phi3 model_type)")
    ap.add_argument("--type", required=True, choices=list(TYPES), help="type of every 2-D weight")
    ap.add_argument("--output-type", choices=list(TYPES), help="type of output.weight (default: --type)")
    ap.add_argument("--embd-type", choices=list(TYPES), help="type of token_embd.weight (default: --type)")
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--pool-mb", type=int, default=256, help="size of the random block pool reused for all tensors")
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()

    t_start = time.time()
    with open(args.config) as f:
        cfg = json.load(f)
    n_embd = int(cfg["hidden_size"])
    n_layer = int(cfg["num_hidden_layers"])
    n_head = int(cfg["num_attention_heads"])
    n_head_kv = int(cfg.get("num_key_value_heads") or n_head)
    head_dim = int(cfg.get("head_dim") or n_embd // n_head)
    n_ff = int(cfg["intermediate_size"])
    n_vocab = int(cfg["vocab_size"])
    n_ctx = int(cfg.get("max_position_embeddings", 4096))
    n_ctx_orig = int(cfg.get("original_max_position_embeddings") or n_ctx)
    rope_theta = float(cfg.get("rope_theta", 10000.0))
    eps = float(cfg.get("rms_norm_eps", 1e-5))
    swa = cfg.get("sliding_window")
    if cfg.get("rope_scaling"):
        sys.exit("rope_scaling (LongRoPE factors) is not supported by this writer")
    if head_dim * n_head != n_embd:
        sys.exit(f"llama.cpp's phi3 needs head_dim * n_head == hidden_size ({head_dim} * {n_head} != {n_embd})")
    n_embd_gqa = head_dim * n_head_kv

    wtype = args.type
    ttype = {"output.weight": args.output_type or wtype, "token_embd.weight": args.embd_type or wtype}

    # (name, ggml shape [ne0 = row length, ne1 = rows], type name or "F32")
    tensors = [("token_embd.weight", (n_embd, n_vocab), ttype["token_embd.weight"])]
    for i in range(n_layer):
        p = f"blk.{i}."
        tensors += [
            (p + "attn_norm.weight", (n_embd,), "F32"),
            (p + "attn_qkv.weight", (n_embd, n_embd + 2 * n_embd_gqa), wtype),
            (p + "attn_output.weight", (n_embd, n_embd), wtype),
            (p + "ffn_norm.weight", (n_embd,), "F32"),
            (p + "ffn_up.weight", (n_embd, 2 * n_ff), wtype),   # gate and up, fused
            (p + "ffn_down.weight", (n_ff, n_embd), wtype),
        ]
    tensors += [("output_norm.weight", (n_embd,), "F32"), ("output.weight", (n_embd, n_vocab), ttype["output.weight"])]

    def nbytes_of(shape, tname):
        n = int(np.prod(shape))
        if tname == "F32":
            return 4 * n
        qt = TYPES[tname][0]
        bs, ts = gguf.GGML_QUANT_SIZES[qt]
        if shape[0] % bs:
            sys.exit(f"row length {shape[0]} is not a multiple of {tname}'s block of {bs}")
        return n // bs * ts

    n_params = sum(int(np.prod(s)) for _, s, _ in tensors)
    tag = wtype if all(v == wtype for v in ttype.values()) else \
        f"{wtype} (token_embd {ttype['token_embd.weight']}, output {ttype['output.weight']})"
    name = f"random {cfg.get('_name_or_path', 'phi3')}-shaped, all 2-D weights {tag}"

    w = gguf.GGUFWriter(args.output, "phi3")
    w.add_name(name)
    w.add_description("random weights written directly in the quantized type, for speed tests only")
    w.add_file_type(int(TYPES[wtype][3]))
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_context_length(n_ctx)
    w.add_rope_scaling_orig_ctx_len(n_ctx_orig)
    w.add_embedding_length(n_embd)
    w.add_feed_forward_length(n_ff)
    w.add_block_count(n_layer)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_layer_norm_rms_eps(eps)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(rope_theta)
    # as convert_hf_to_gguf.py's Phi3MiniModel does: None -> 0 (what marks Phi-4 there)
    w.add_sliding_window(int(swa) if swa is not None else 0)
    tokens, scores, toktypes = vocab_tokens(n_vocab)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(toktypes)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)

    for tname, shape, ty in tensors:
        nb = nbytes_of(shape, ty)
        if ty == "F32":
            w.add_tensor_info(tname, shape[::-1], np.dtype(np.float32), nb)
        else:
            # add_tensor_info takes the numpy-order shape (rows first) of the logical tensor
            w.add_tensor_info(tname, shape[::-1], np.dtype(np.float16), nb, raw_dtype=TYPES[ty][0])

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    fout = w.fout[0]
    w.write_padding(fout, fout.tell())

    t_pool = time.time()
    pools = {}
    for ty in sorted({t for _, _, t in tensors if t != "F32"}):
        qt, offs, val, _ = TYPES[ty]
        largest = max(nbytes_of(s, t) for _, s, t in tensors if t == ty)
        pools[ty] = block_pool(qt, offs, val, min(args.pool_mb << 20, largest), args.seed).reshape(-1)
    t_pool = time.time() - t_pool

    t_write = time.time()
    cursor = {ty: 0 for ty in pools}
    for tname, shape, ty in tensors:
        nb = nbytes_of(shape, ty)
        if ty == "F32":
            np.ones(int(np.prod(shape)), dtype=np.float32).tofile(fout)
        else:
            pool = pools[ty]
            ts = gguf.GGML_QUANT_SIZES[TYPES[ty][0]][1]
            left = nb
            while left > 0:  # whole blocks from the pool, cycling; every chunk starts on a block boundary
                start = cursor[ty]
                take = min(left, pool.size - start)
                fout.write(memoryview(pool[start:start + take]))
                left -= take
                cursor[ty] = (start + take) % pool.size
            # shift the next tensor's start by a few blocks, so tensors are not all identical
            cursor[ty] = (cursor[ty] + 7 * ts) % pool.size
        w.write_padding(fout, nb)
    fout.flush()
    if os.environ.get("GGUF_FSYNC"):
        os.fsync(fout.fileno())
    w.close()
    t_write = time.time() - t_write

    size = os.path.getsize(args.output)
    print(f"{args.output}: {name}")
    print(f"  tensors {len(tensors)}, parameters {n_params:,} ({n_params / 1e9:.3f} B), file {size:,} bytes "
          f"({size / 2**30:.2f} GiB), {size * 8 / n_params:.4f} bits per weight (file bytes * 8 / parameters)")
    print(f"  time: total {time.time() - t_start:.1f} s (random pool {t_pool:.1f} s, tensor data {t_write:.1f} s, "
          f"{size / max(t_write, 1e-9) / 2**30:.2f} GiB/s)")


if __name__ == "__main__":
    main()
