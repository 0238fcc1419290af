#!/usr/bin/env python3
"""Golden outputs for Grok-1 (Grok1ModelForCausalLM) from a JAX re-implementation of xai-org/grok-1's
model.py.

No transformers implementation of Grok exists, and model.py itself does not run here: it needs
dm-haiku (not installed on the GPU machine, not reachable from it) and jax.experimental.maps (gone
from current JAX). The oracle below is therefore a standalone transcription of model.py's forward
pass, function by function (each function names the model.py code it follows), in fp32 with the
HIGHEST matmul precision. What it leaves out of model.py: the sharding constraints and shard_map
(one device), the int8 weight quantization (QuantizedWeight8bit: the weights here are plain), the
KV memory (every call recomputes the whole sequence, as a prefill), and the bf16 casts (fprop_dtype
is float32 here, and MoELayer's hard-coded .astype(jnp.bfloat16) of the gate and output are not
applied), as every golden of this repository is fp32.

The random model is made in model.py's parameter layout (haiku module paths, weights [in, out]) and
written in the tensor names of the Hugging Face conversion hpcai-tech/grok-1 (weights [out, in]), so
the script also states that mapping (to_hf below). Writes <out>/grok1_moe_bf16/{config.json,
model.safetensors (BF16), golden.safetensors}; the golden holds, as tools/make_goldens.py's:
  prompt.<i> I32 [len], logits.<i> F32 [len, vocab] (one forward pass), greedy.<i> I32 [n] (argmax
  at each step, full recomputation), gap.<i> F32 [n] (top-1 minus top-2 logit at each step).

Usage: python3 tools/make_grok_golden.py --out tests/golden [--backend jax|numpy] [--check-numpy]
(--backend numpy runs the same transcription on numpy, for machines without JAX; --check-numpy,
with the jax backend, also runs it and prints the largest difference between the two.)
"""
import argparse
import json
import math
import os
import shutil
import struct
import sys

import numpy as np

CASE = "grok1_moe_bf16"
VOCAB = 512
# A tiny Grok-1: the hpcai-tech config fields, with multipliers chosen so that each of them matters:
# attention scale not 1/sqrt(head_dim), a soft-cap that bites (pre-cap scores reach about 1.9 times
# the cap), an embedding multiplier (2; Grok-1's 78.38 is sqrt(6144), but at sqrt(128) the tied
# head of this random model only repeats the last token), Grok-1's output multiplier 1/sqrt(3).
CONFIG = {
    "architectures": ["Grok1ModelForCausalLM"],
    "model_type": "grok-1",
    "vocab_size": VOCAB,
    "hidden_size": 128,
    "intermediate_size": 96,  # model.py's ffn_size(128, widening_factor=1.125)
    "num_hidden_layers": 2,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "num_experts": 4,
    "num_experts_per_tok": 2,
    "attn_output_multiplier": 0.3,
    "max_attn_value": 2.0,
    "embedding_multiplier_scale": 2.0,
    "output_multiplier_scale": 0.5773502691896257,
    "rms_norm_eps": 1e-05,
    "max_position_embeddings": 256,
    "pad_token_id": 0,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "tie_word_embeddings": True,
    "router_aux_loss_coef": 0.001,
    "output_router_logits": False,
    "use_cache": True,
    "torch_dtype": "bfloat16",
}
LENGTHS = [9, 17, 1]
GREEDY_STEPS = 12
SEED = 1234


# ---- backends: the same transcription runs on jax.numpy or numpy -----------------------------------

class JaxOps:
    def __init__(self):
        import jax
        import jax.numpy as jnp
        jax.config.update("jax_default_matmul_precision", "highest")
        self.jax, self.xp = jax, jnp

    def asarray(self, a):
        return self.xp.asarray(a, dtype=self.xp.float32)

    def softmax(self, x):
        return self.jax.nn.softmax(x)

    def gelu(self, x):
        return self.jax.nn.gelu(x)  # approximate=True by default, as model.py calls it

    def rsqrt(self, x):
        return self.jax.lax.rsqrt(x)

    def top_k(self, x, k):
        return self.jax.lax.top_k(x, k)

    def one_hot(self, idx, n):
        return self.jax.nn.one_hot(idx, n, axis=0)

    def to_numpy(self, x):
        return np.asarray(x, dtype=np.float32)


class NumpyOps:
    def __init__(self):
        self.xp = np

    def asarray(self, a):
        return np.asarray(a, dtype=np.float32)

    def softmax(self, x):
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    def gelu(self, x):  # jax.nn.gelu(approximate=True)
        return 0.5 * x * (1 + np.tanh(np.float32(math.sqrt(2 / math.pi)) * (x + np.float32(0.044715) * x ** 3)))

    def rsqrt(self, x):
        return 1 / np.sqrt(x)

    def top_k(self, x, k):
        idx = np.argsort(-x, axis=-1, kind="stable")[..., :k]
        return np.take_along_axis(x, idx, axis=-1), idx

    def one_hot(self, idx, n):
        return (np.arange(n)[:, None] == idx[None, :]).astype(np.float32)

    def to_numpy(self, x):
        return np.asarray(x, dtype=np.float32)


# ---- the oracle: model.py's forward pass -------------------------------------------------------------

def rms_norm(o, x, scale, eps):
    """model.py RMSNorm.__call__: scale * x * rsqrt(mean(x^2) + eps), in fp32 (eps 1e-5)."""
    xp = o.xp
    mean_squared = xp.mean(xp.square(x), axis=-1, keepdims=True)
    return scale * (x * o.rsqrt(mean_squared + eps))


def rotate_half(o, x):
    """model.py rotate_half."""
    x1, x2 = o.xp.split(x, 2, axis=-1)
    return o.xp.concatenate((-x2, x1), axis=-1)


def rotary(o, x, base=10000):
    """model.py RotaryEmbedding.__call__ with seq_dim=1, offset 0; x [B, T, heads, dim]."""
    xp = o.xp
    dim = x.shape[-1]
    exponents = xp.arange(0, dim, 2, dtype=xp.float32)
    inv_freq = 1.0 / (base ** (exponents / dim))
    t = xp.arange(x.shape[1], dtype=xp.float32)[None, :]  # + offset 0
    phase = xp.einsum("bi,j->bij", t, inv_freq)
    phase = xp.tile(phase, (1, 1, 2))[:, :, None, :]
    return x * xp.cos(phase) + rotate_half(o, x) * xp.sin(phase)


def multi_head_attention(o, p, x, mask, cfg):
    """model.py MultiHeadAttention.__call__ (no KV memory); x [B, T, D], mask [B, 1, T, T]."""
    xp = o.xp
    B, T, _ = x.shape
    H, KV = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg["hidden_size"] // H  # key_size
    q = xp.dot(x, p["query"]).reshape(B, T, H, hd)
    k = xp.dot(x, p["key"]).reshape(B, T, KV, hd)
    v = xp.dot(x, p["value"]).reshape(B, T, KV, hd)
    k = rotary(o, k)
    q = rotary(o, q)
    q = q.reshape(B, T, KV, H // KV, hd)
    logits = xp.einsum("...thHd,...Thd->...hHtT", q, k)
    logits = logits * cfg["attn_output_multiplier"]
    cap = cfg["max_attn_value"]  # model.py: max_attn_val = 30.0
    logits = cap * xp.tanh(logits / cap)
    m = mask[:, :, None, :, :]
    logits = xp.where(m > 0, logits, -1e30)
    weights = o.softmax(logits)
    attn = xp.einsum("...hHtT,...Thd->...thHd", weights, v).reshape(B, T, H * hd)
    return xp.dot(attn, p["linear"])


def moe_layer(o, p, x, cfg):
    """model.py Router._compute_routing_prob + MoELayer._inference_call (the moe_slow_matmul path:
    every expert on every routed copy, the chosen one picked by a one-hot) with DenseBlock's
    linear_1(gelu(linear(x)) * linear_v(x)) per expert."""
    xp = o.xp
    B, T, D = x.shape
    E, K = cfg["num_experts"], cfg["num_experts_per_tok"]
    routing_probs = o.softmax(xp.dot(x, p["router"]))
    expert_gate, expert_index = o.top_k(routing_probs, K)
    tmp = x.reshape(B * T, D)
    broad = xp.tile(tmp[:, None, :], (1, K, 1)).reshape(B * T * K, D)
    one_hot = o.one_hot(expert_index.reshape(-1), E)  # [E, B*T*K] (model.py writes 8 for E: Grok-1's count)

    def slow_matmul(inp, w):
        all_out = xp.einsum("mk,bkn->bmn", inp, w)
        return xp.einsum("bm,bmn->mn", one_hot, all_out)

    h_v = slow_matmul(broad, p["moe_linear_v"])
    h_w1 = o.gelu(slow_matmul(broad, p["moe_linear"]))
    out = slow_matmul(h_w1 * h_v, p["moe_linear_1"]).reshape(B, T, K, D)
    return xp.sum(expert_gate[:, :, :, None] * out, axis=2)


def decoder_layer(o, p, h, mask, cfg):
    """model.py DecoderLayer.__call__: rms_norm / rms_norm_1 around attention, rms_norm_2 /
    rms_norm_3 around the MoE (haiku names them in call order)."""
    eps = cfg["rms_norm_eps"]
    h_attn = multi_head_attention(o, p, rms_norm(o, h, p["rms_norm"], eps), mask, cfg)
    h = h + rms_norm(o, h_attn, p["rms_norm_1"], eps)
    h_dense = moe_layer(o, p, rms_norm(o, h, p["rms_norm_2"], eps), cfg)
    return h + rms_norm(o, h_dense, p["rms_norm_3"], eps)


def language_model(o, params, tokens, cfg):
    """model.py LanguageModel.__call__ + Transformer.__call__; tokens [B, T] -> logits [B, T, V]."""
    xp = o.xp
    emb = params["language_model/in_out_embed"]["embeddings"]
    h = emb[xp.asarray(tokens)] * cfg["embedding_multiplier_scale"]
    input_mask = (xp.asarray(tokens) != cfg["pad_token_id"]).astype(xp.float32)
    T = tokens.shape[1]
    mask = input_mask[:, None, None, :] * xp.tril(xp.ones((1, 1, T, T), dtype=xp.float32))
    for i in range(cfg["num_hidden_layers"]):
        h = decoder_layer(o, params[f"decoder_layer_{i}"], h, mask, cfg)
    h = rms_norm(o, h, params["language_model/rms_norm"]["scale"], cfg["rms_norm_eps"])
    return xp.dot(h, emb.T) * cfg["output_multiplier_scale"]  # InOutEmbed.decode, tied


# ---- the random model, its bf16 storage and the HF names ---------------------------------------------

def bf16_bits(a):
    """Round fp32 to bf16 (nearest even); returns the uint16 bit patterns."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def bf16_round(a):
    return (bf16_bits(a).astype(np.uint32) << 16).view(np.float32)


def make_params(cfg, seed):
    """Parameters in model.py's layout (one dict per decoder layer, haiku's names), bf16-exact."""
    rng = np.random.RandomState(seed)
    D, V, F = cfg["hidden_size"], cfg["vocab_size"], cfg["intermediate_size"]
    H, KV, E = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["num_experts"]
    hd = D // H

    def w(*shape, std=0.08):
        return bf16_round(rng.standard_normal(shape).astype(np.float32) * std)

    def norm():
        return bf16_round(1.0 + 0.2 * rng.standard_normal(D).astype(np.float32))

    params = {"language_model/in_out_embed": {"embeddings": w(V, D)}}
    for i in range(cfg["num_hidden_layers"]):
        params[f"decoder_layer_{i}"] = {
            "rms_norm": norm(), "query": w(D, H * hd), "key": w(D, KV * hd), "value": w(D, KV * hd),
            "linear": w(H * hd, D), "rms_norm_1": norm(), "rms_norm_2": norm(), "router": w(D, E, std=0.3),
            "moe_linear": w(E, D, F), "moe_linear_v": w(E, D, F), "moe_linear_1": w(E, F, D), "rms_norm_3": norm(),
        }
    params["language_model/rms_norm"] = {"scale": norm()}
    return params


def to_hf(params, cfg):
    """model.py's parameters -> hpcai-tech/grok-1 tensor names ([out, in] weights)."""
    t = {"model.embed_tokens.weight": params["language_model/in_out_embed"]["embeddings"],
         "model.norm.scale": params["language_model/rms_norm"]["scale"]}
    for i in range(cfg["num_hidden_layers"]):
        p, pre = params[f"decoder_layer_{i}"], f"model.layers.{i}."
        t[pre + "pre_attn_norm.scale"] = p["rms_norm"]
        t[pre + "attn.q_proj.weight"] = p["query"].T
        t[pre + "attn.k_proj.weight"] = p["key"].T
        t[pre + "attn.v_proj.weight"] = p["value"].T
        t[pre + "attn.o_proj.weight"] = p["linear"].T
        t[pre + "post_attn_norm.scale"] = p["rms_norm_1"]
        t[pre + "pre_moe_norm.scale"] = p["rms_norm_2"]
        t[pre + "moe_block.gate.weight"] = p["router"].T
        for e in range(cfg["num_experts"]):
            t[pre + f"moe_block.experts.{e}.linear.weight"] = p["moe_linear"][e].T
            t[pre + f"moe_block.experts.{e}.linear_v.weight"] = p["moe_linear_v"][e].T
            t[pre + f"moe_block.experts.{e}.linear_1.weight"] = p["moe_linear_1"][e].T
        t[pre + "post_moe_norm.scale"] = p["rms_norm_3"]
    return t


def save_safetensors(path, tensors, metadata):
    """tensors: name -> (dtype "BF16" | "F32" | "I32", numpy array)."""
    header, blobs, off = {"__metadata__": metadata}, [], 0
    for name, (dt, a) in tensors.items():
        if dt == "BF16":
            raw = bf16_bits(a).tobytes()
        else:
            raw = np.ascontiguousarray(a, dtype={"F32": "<f4", "I32": "<i4"}[dt]).tobytes()
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


# ---- golden ------------------------------------------------------------------------------------------

def run_case(o, params_np, cfg):
    params = {k: {n: o.asarray(v) for n, v in d.items()} for k, d in params_np.items()}
    rng = np.random.RandomState(SEED + 1)
    out = {}
    for i, n in enumerate(LENGTHS):
        ids = rng.randint(3, VOCAB, size=n).tolist()
        logits = o.to_numpy(language_model(o, params, np.array([ids], dtype=np.int32), cfg))[0]
        seq, gaps = list(ids), []
        for _ in range(GREEDY_STEPS):  # full recomputation at each step, as tools/make_goldens.py
            last = o.to_numpy(language_model(o, params, np.array([seq], dtype=np.int32), cfg))[0, -1]
            top = np.argsort(-last, kind="stable")[:2]
            gaps.append(float(last[top[0]] - last[top[1]]))
            seq.append(int(top[0]))
        # model.py masks keys whose token is pad_token_id; the HF conversion and UPG do not. Keep the
        # comparison free of that difference.
        if cfg["pad_token_id"] in seq:
            raise SystemExit(f"prompt {i}: the pad token {cfg['pad_token_id']} occurs in {seq}; change SEED")
        out[i] = (ids, logits, seq[n:], gaps)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--backend", choices=["jax", "numpy"], default="jax")
    ap.add_argument("--check-numpy", action="store_true")
    args = ap.parse_args()
    cfg = CONFIG
    params = make_params(cfg, SEED)
    o = JaxOps() if args.backend == "jax" else NumpyOps()
    if args.backend == "jax":
        print("jax", o.jax.__version__, "devices", o.jax.devices())
    res = run_case(o, params, cfg)
    if args.check_numpy and args.backend == "jax":
        ref = run_case(NumpyOps(), params, cfg)
        for i in res:
            d = np.abs(res[i][1] - ref[i][1]).max() / np.abs(ref[i][1]).max()
            print(f"prompt {i}: jax vs numpy max relative logit difference {d:.3g}, "
                  f"greedy {'same' if res[i][2] == ref[i][2] else 'DIFFERENT'}")
    d = os.path.join(args.out, CASE)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    save_safetensors(os.path.join(d, "model.safetensors"),
                     {k: ("BF16", v) for k, v in to_hf(params, cfg).items()}, {"format": "pt"})
    g = {}
    for i, (ids, logits, greedy, gaps) in res.items():
        g[f"prompt.{i}"] = ("I32", np.array(ids, dtype=np.int32))
        g[f"logits.{i}"] = ("F32", logits)
        g[f"greedy.{i}"] = ("I32", np.array(greedy, dtype=np.int32))
        g[f"gap.{i}"] = ("F32", np.array(gaps, dtype=np.float32))
        print(f"prompt {i}: len {len(ids)} greedy {greedy} min gap {min(gaps):.4g}")
    save_safetensors(os.path.join(d, "golden.safetensors"), g,
                     {"case": CASE, "oracle": f"model.py transcription on {args.backend}"})
    print(f"{CASE}: ok ({sorted(os.listdir(d))})")


if __name__ == "__main__":
    sys.exit(main())
