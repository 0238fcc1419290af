#!/usr/bin/env python3
"""Produce golden reference outputs from Hugging Face transformers for UPG's tests.

Runs where torch, transformers, safetensors and tokenizers are installed (the GPU machine; CPU works
too, slowly). Writes, under OUT_DIR:

  <case>/            a tiny random-weight model directory per supported architecture / config variant
                     (config.json exactly as written below, *.safetensors, maybe an index) plus
  <case>/golden.safetensors
                     prompt.<i>  I32 [len]         token ids of prompt i
                     logits.<i>  F32 [len, vocab]  fp32 logits of every position (one forward pass)
                     greedy.<i>  I32 [n]           greedy continuation (argmax at each step, full recomputation)
                     gap.<i>     F32 [n]           top-1 minus top-2 logit at each greedy step
  refA/golden.safetensors   for ../shared/data/models/refA-phi3-26m: prompt/greedy/gap for text prompts,
                     text.<i> (U8 bytes) and their ids tok.<i> from the HF tokenizer, and
                     last_logits.<i> (F32 [vocab]) of each prompt
  refA/wikitext_ids.safetensors  ids I32 [N]: wiki.test.raw tokenized whole (no BOS)

Usage: python3 tools/make_goldens.py --refa DIR --wikitext FILE --out OUT_DIR
"""
import argparse
import json
import os
import shutil
import sys
import traceback

import torch
from safetensors.torch import save_file
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

VOCAB = 512


def base(arch, model_type, **kw):
    cfg = {
        "architectures": [arch],
        "model_type": model_type,
        "vocab_size": VOCAB,
        "hidden_size": 128,
        "intermediate_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 8,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-5,
        "max_position_embeddings": 256,
        "hidden_act": "silu",
        "initializer_range": 0.08,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 0,
        "tie_word_embeddings": False,
        "attention_dropout": 0.0,
    }
    cfg.update(kw)
    return cfg


def cases():
    """(name, config dict as written to config.json, storage dtype, shard size, prompt lengths)."""
    c = []
    # Phi-4 shape scaled down (GQA 4:1 here), newer config style, bf16.
    c.append(("phi4_gqa_bf16", base("Phi3ForCausalLM", "phi3", num_attention_heads=8, num_key_value_heads=2,
              original_max_position_embeddings=256, dtype="bfloat16",
              rope_parameters={"rope_type": "default", "rope_theta": 250000.0, "partial_rotary_factor": 1.0}),
              torch.bfloat16, None, [7, 19, 1]))
    # Phi-3-mini style: older config style, MHA, f16 weights.
    c.append(("phi3_mini_f16_oldstyle", base("Phi3ForCausalLM", "phi3", num_key_value_heads=8, rope_theta=10000.0,
              torch_dtype="float16", original_max_position_embeddings=256), torch.float16, None, [9, 16]))
    # Phi-3 long-context: longrope with short/long factors and partial rotary (phi-4-mini style).
    # Prompts longer than original_max_position_embeddings (32) use the long factors.
    head_dim = 16
    n_rot = int(head_dim * 0.75) // 2
    short = [1.0 + 0.05 * i for i in range(n_rot)]
    long = [1.0 + 0.9 * i for i in range(n_rot)]
    c.append(("phi3_longrope_partial", base("Phi3ForCausalLM", "phi3", rope_theta=10000.0, partial_rotary_factor=0.75,
              original_max_position_embeddings=32, max_position_embeddings=256, torch_dtype="bfloat16",
              rope_scaling={"type": "longrope", "long_factor": long, "short_factor": short}),
              torch.bfloat16, None, [40, 45]))
    # Phi-3 "su" scaling (older name of longrope), short prompts use the short factors.
    c.append(("phi3_su_short", base("Phi3ForCausalLM", "phi3", rope_theta=10000.0, num_key_value_heads=4,
              original_max_position_embeddings=64, max_position_embeddings=512, torch_dtype="bfloat16",
              rope_scaling={"type": "su", "original_max_position_embeddings": 64,
                            "long_factor": [1.0 + 0.7 * i for i in range(8)],
                            "short_factor": [1.0 + 0.1 * i for i in range(8)]}),
              torch.bfloat16, None, [12, 20]))
    # Llama-3.2 style: llama3 rope scaling, tied embeddings, f32 weights, sharded.
    c.append(("llama32_tied_sharded_f32", base("LlamaForCausalLM", "llama", tie_word_embeddings=True, dtype="float32",
              head_dim=16, rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0,
                                            "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                            "original_max_position_embeddings": 64}),
              torch.float32, "200KB", [11, 3]))
    # Llama-2 style: older config, MHA, linear rope scaling, f16.
    c.append(("llama2_linear_f16", base("LlamaForCausalLM", "llama", num_key_value_heads=8, rope_theta=10000.0,
              torch_dtype="float16", rope_scaling={"type": "linear", "factor": 2.0}), torch.float16, None, [13]))
    # Mistral: GQA, older config style, bf16.
    c.append(("mistral_gqa_bf16", base("MistralForCausalLM", "mistral", rope_theta=1000000.0, sliding_window=None,
              head_dim=16, torch_dtype="bfloat16"), torch.bfloat16, None, [10, 17]))
    # Qwen2: q/k/v bias, tied embeddings, bf16.
    c.append(("qwen2_bias_tied_bf16", base("Qwen2ForCausalLM", "qwen2", tie_word_embeddings=True, rope_theta=1000000.0,
              num_key_value_heads=2, use_sliding_window=False, torch_dtype="bfloat16"), torch.bfloat16, None, [8, 21]))
    # Gemma 2: (1 + w) norms before and after attention and MLP, GELU-tanh, query_pre_attn_scalar,
    # attention and final logit soft-capping, alternating sliding (window 8 < prompt lengths) and
    # global layers, scaled and tied embeddings. Window and caps small so they bite.
    c.append(("gemma2_softcap_bf16", base("Gemma2ForCausalLM", "gemma2", head_dim=16, query_pre_attn_scalar=24,
              sliding_window=8, attn_logit_softcapping=5.0, final_logit_softcapping=3.0,
              hidden_activation="gelu_pytorch_tanh", hidden_act="gelu_pytorch_tanh", num_hidden_layers=4,
              tie_word_embeddings=True, rope_theta=10000.0, rms_norm_eps=1e-6, torch_dtype="bfloat16"),
              torch.bfloat16, None, [7, 19, 1]))
    # Mixtral: 4 experts, top-2, softmax router.
    c.append(("mixtral_moe_bf16", base("MixtralForCausalLM", "mixtral", num_local_experts=4, num_experts_per_tok=2,
              head_dim=16, rope_theta=1000000.0, sliding_window=None, router_jitter_noise=0.0,
              intermediate_size=96, torch_dtype="bfloat16"), torch.bfloat16, None, [9, 17]))
    # Qwen2-MoE: 4 experts top-2 without renormalisation, a shared expert with a sigmoid gate, the
    # middle layer dense (mlp_only_layers).
    c.append(("qwen2_moe_shared_bf16", base("Qwen2MoeForCausalLM", "qwen2_moe", num_experts=4, num_experts_per_tok=2,
              moe_intermediate_size=64, shared_expert_intermediate_size=96, intermediate_size=160,
              norm_topk_prob=False, decoder_sparse_step=1, mlp_only_layers=[1], num_hidden_layers=3,
              use_sliding_window=False, rope_theta=1000000.0, torch_dtype="bfloat16"), torch.bfloat16, None, [8, 15]))
    # Mixtral-style router with renormalised top-k (norm_topk_prob) on Qwen2-MoE, f32, sharded.
    c.append(("qwen2_moe_norm_f32", base("Qwen2MoeForCausalLM", "qwen2_moe", num_experts=4, num_experts_per_tok=3,
              moe_intermediate_size=48, shared_expert_intermediate_size=64, intermediate_size=128,
              norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[], num_hidden_layers=2,
              use_sliding_window=False, rope_theta=10000.0, dtype="float32"), torch.float32, "300KB", [6]))
    # DeepSeek V3: MLA (q and kv LoRA with norms, decoupled rope part), YaRN with mscale, first layer
    # dense, then sigmoid-routed experts (correction bias, group-limited top-k, routed scaling) plus a
    # shared expert.
    c.append(("deepseek_v3_mla_bf16", base("DeepseekV3ForCausalLM", "deepseek_v3", hidden_size=128, intermediate_size=192,
              moe_intermediate_size=48, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4,
              n_shared_experts=1, n_routed_experts=8, routed_scaling_factor=2.5, kv_lora_rank=32, q_lora_rank=48,
              qk_rope_head_dim=8, v_head_dim=16, qk_nope_head_dim=16, n_group=4, topk_group=2, num_experts_per_tok=2,
              first_k_dense_replace=1, norm_topk_prob=True, rope_theta=10000.0, max_position_embeddings=256,
              rope_scaling={"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64, "beta_fast": 32,
                            "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0},
              rope_interleave=True, torch_dtype="bfloat16"), torch.bfloat16, None, [9, 14]))
    return c


def greedy(model, ids, n):
    """Greedy continuation by full recomputation at each step (no cache, no logits processors)."""
    seq, gaps = list(ids), []
    with torch.no_grad():
        for _ in range(n):
            last = model(torch.tensor([seq])).logits[0, -1].float()
            top = torch.topk(last, 2)
            gaps.append(float(top.values[0] - top.values[1]))
            seq.append(int(top.indices[0]))
    return seq[len(ids):], gaps


def make_case(out_dir, name, cfg, dtype, shard, lengths, seed):
    d = os.path.join(out_dir, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    torch.manual_seed(seed)
    config = AutoConfig.from_pretrained(d)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():  # norms and biases away from their trivial init, so they are tested
        for pname, p in model.named_parameters():
            if "norm" in pname:
                # Gemma's norms scale by (1 + w): keep w small there so both forms get tested.
                p.copy_((0.0 if cfg["model_type"] == "gemma2" else 1.0) + 0.2 * torch.randn_like(p))
            elif pname.endswith(".bias"):
                p.copy_(0.1 * torch.randn_like(p))
        for bname, b in model.named_buffers():
            if bname.endswith("e_score_correction_bias"):  # DeepSeek's router correction (zeros at init)
                b.copy_(0.05 * torch.randn_like(b))
    model = model.to(dtype)
    kw = {"max_shard_size": shard} if shard else {}
    model.save_pretrained(d, safe_serialization=True, **kw)
    # Keep config.json exactly as we wrote it (save_pretrained rewrites it in its own style).
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    for extra in ("generation_config.json",):
        p = os.path.join(d, extra)
        if os.path.exists(p):
            os.remove(p)
    # Reload exactly as a user would, in fp32, and compute the references.
    ref = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()
    g = torch.Generator().manual_seed(seed + 1)
    tensors = {}
    for i, n in enumerate(lengths):
        ids = torch.randint(3, VOCAB, (n,), generator=g).tolist()
        with torch.no_grad():
            logits = ref(torch.tensor([ids])).logits[0].float()
        seq, gaps = greedy(ref, ids, 12)
        tensors[f"prompt.{i}"] = torch.tensor(ids, dtype=torch.int32)
        tensors[f"logits.{i}"] = logits.contiguous()
        tensors[f"greedy.{i}"] = torch.tensor(seq, dtype=torch.int32)
        tensors[f"gap.{i}"] = torch.tensor(gaps, dtype=torch.float32)
    save_file(tensors, os.path.join(d, "golden.safetensors"), metadata={"case": name})
    print(f"{name}: ok ({sorted(os.listdir(d))})")
    from safetensors import safe_open
    for f in sorted(os.listdir(d)):
        if f.endswith(".safetensors") and f != "golden.safetensors":
            with safe_open(os.path.join(d, f), "pt") as st:
                for k in st.keys():
                    if ".layers.0." in k or ".layers." not in k or "layers.1.mlp" in k:
                        print(f"  {f}: {k} {list(st.get_slice(k).get_shape())} {st.get_slice(k).get_dtype()}")
    return ref


def make_torch_legacy(out_dir, seed):
    """torch.save state dicts (what pytorch_model.bin files are), single-file and sharded, of a tiny
    tied-embedding Llama, plus the same weights as model.safetensors and the reference logits."""
    cfg = base("LlamaForCausalLM", "llama", tie_word_embeddings=True, head_dim=16, rope_theta=10000.0,
               torch_dtype="bfloat16")
    d = os.path.join(out_dir, "torch_legacy")
    shutil.rmtree(d, ignore_errors=True)
    ref = make_case(out_dir, "torch_legacy", cfg, torch.bfloat16, None, [10], seed)
    from safetensors.torch import load_file
    sd = load_file(os.path.join(d, "model.safetensors"))
    sd["lm_head.weight"] = sd["model.embed_tokens.weight"]  # tied: one storage under two names, as torch.save keeps it
    single = os.path.join(d, "single")
    os.makedirs(single)
    torch.save(sd, os.path.join(single, "pytorch_model.bin"))
    shutil.copy(os.path.join(d, "config.json"), single)
    sharded = os.path.join(d, "sharded")
    os.makedirs(sharded)
    names = list(sd.keys())
    parts = [names[: len(names) // 2], names[len(names) // 2:]]
    weight_map = {}
    for i, part in enumerate(parts):
        fn = f"pytorch_model-{i + 1:05d}-of-{len(parts):05d}.bin"
        # Also a non-contiguous slice stored as a view would be unusual in a state dict; keep plain tensors.
        torch.save({k: sd[k] for k in part}, os.path.join(sharded, fn))
        weight_map.update({k: fn for k in part})
    with open(os.path.join(sharded, "pytorch_model.bin.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": sum(t.numel() * t.element_size() for t in sd.values())},
                   "weight_map": weight_map}, f, indent=2)
    shutil.copy(os.path.join(d, "config.json"), sharded)
    # Old-style (legacy=True) f32 and f16 single tensors in one file, to test storage types.
    torch.save({"a.f32": torch.arange(12, dtype=torch.float32).reshape(3, 4),
                "b.f16": torch.arange(6, dtype=torch.float16).reshape(2, 3) / 4,
                "c.bf16": (torch.arange(8, dtype=torch.float32) / 8).to(torch.bfloat16),
                "d.i64": torch.arange(5, dtype=torch.int64),
                "e.view": torch.arange(20, dtype=torch.float32)[4:14].reshape(2, 5)},
               os.path.join(d, "dtypes.bin"))
    print("torch_legacy: ok", sorted(os.listdir(single)), sorted(os.listdir(sharded)))


def make_torch_strided(out_dir):
    """torch.save of non-contiguous views (transposed, strided slices, views sharing one storage at
    different offsets and strides) as torch_legacy/views/strided.bin, and their values made contiguous
    as strided_expected.safetensors beside it (what a reader must produce)."""
    d = os.path.join(out_dir, "torch_legacy", "views")
    os.makedirs(d, exist_ok=True)
    g = torch.Generator().manual_seed(7)
    base = torch.randn(6, 10, generator=g)
    big = torch.randn(48, generator=g).to(torch.bfloat16)
    sd = {
        "t.transposed": base.t(),                        # stride (1, 10)
        "t.every_other_col": base[:, ::2],               # stride (10, 2), offset 0
        "t.block": base[1:5, 3:9],                       # offset 13, stride (10, 1)
        "t.base": base,                                  # the storage itself, shared with the three above
        "b.strided_bf16": big[3:].view(5, 9)[:, 1::3],   # bf16, offset 4, stride (9, 3)
        "b.rows_f16": torch.randn(4, 5, generator=g).to(torch.float16)[::2],  # stride (10, 1)
    }
    torch.save(sd, os.path.join(d, "strided.bin"))
    save_file({k: v.contiguous() for k, v in sd.items()}, os.path.join(d, "strided_expected.safetensors"))
    back = torch.load(os.path.join(d, "strided.bin"))
    assert all(torch.equal(back[k], v) for k, v in sd.items())
    print("torch_strided: ok", {k: (tuple(v.shape), v.stride(), v.storage_offset()) for k, v in sd.items()})


def make_deepseek_fp8(out_dir, src_name, seed):
    """A DeepSeek-V3 checkpoint in its FP8 form: every linear weight of the layers as float8_e4m3fn
    with 128x128 block scales (weight_scale_inv, one float per block, weight = fp8 * scale), as
    DeepSeek publishes V3; references computed from the dequantized weights."""
    from safetensors.torch import load_file
    src = os.path.join(out_dir, src_name)
    d = os.path.join(out_dir, src_name.replace("_bf16", "_fp8"))
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    with open(os.path.join(src, "config.json")) as f:
        cfg = json.load(f)
    cfg["quantization_config"] = {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                                  "weight_block_size": [128, 128]}
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    sd = {}
    for fn in os.listdir(src):
        if fn.endswith(".safetensors") and fn != "golden.safetensors":
            sd.update(load_file(os.path.join(src, fn)))
    out, deq = {}, {}
    B = 128
    for k, w in sd.items():
        is_linear = (".layers." in k and k.endswith(".weight") and w.dim() == 2 and "norm" not in k
                     and not k.endswith("mlp.gate.weight"))
        if not is_linear:
            out[k] = w
            deq[k] = w
            continue
        wf = w.float()
        R, C = wf.shape
        rb, cb = (R + B - 1) // B, (C + B - 1) // B
        scale = torch.zeros(rb, cb)
        q = torch.zeros(R, C, dtype=torch.float8_e4m3fn)
        for i in range(rb):
            for j in range(cb):
                blk = wf[i * B:(i + 1) * B, j * B:(j + 1) * B]
                s = blk.abs().max().clamp(min=1e-12) / 448.0
                scale[i, j] = s
                q[i * B:(i + 1) * B, j * B:(j + 1) * B] = (blk / s).to(torch.float8_e4m3fn)
        out[k] = q
        out[k + "_scale_inv"] = scale
        full = scale.repeat_interleave(B, 0)[:R].repeat_interleave(B, 1)[:, :C]
        deq[k] = (q.float() * full).to(w.dtype)
    save_file(out, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
    # References: the bf16 model with the dequantized weights.
    tmp = d + ".deq"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    with open(os.path.join(src, "config.json")) as f:
        json.dump(json.load(f), open(os.path.join(tmp, "config.json"), "w"))
    save_file({k: v.contiguous() for k, v in deq.items()}, os.path.join(tmp, "model.safetensors"), metadata={"format": "pt"})
    ref = AutoModelForCausalLM.from_pretrained(tmp, dtype=torch.float32, attn_implementation="eager").eval()
    g = torch.Generator().manual_seed(seed + 1)
    tensors = {}
    for i, n in enumerate([9]):
        ids = torch.randint(3, VOCAB, (n,), generator=g).tolist()
        with torch.no_grad():
            logits = ref(torch.tensor([ids])).logits[0].float()
        seq, gaps = greedy(ref, ids, 12)
        tensors[f"prompt.{i}"] = torch.tensor(ids, dtype=torch.int32)
        tensors[f"logits.{i}"] = logits.contiguous()
        tensors[f"greedy.{i}"] = torch.tensor(seq, dtype=torch.int32)
        tensors[f"gap.{i}"] = torch.tensor(gaps, dtype=torch.float32)
    save_file(tensors, os.path.join(d, "golden.safetensors"), metadata={"case": os.path.basename(d)})
    shutil.rmtree(tmp)
    print(f"{os.path.basename(d)}: ok")


REFA_PROMPTS = [
    "The history of the city",
    "In mathematics, a prime number is",
    "The river flows through",
    "He was born in 1950 in",
    "The album was released",
]

TOKENIZER_TEXTS = [
    "Hello world",
    " leading space and  double  spaces",
    "Numbers 12345 and 3.14159, dates 1999-12-31.",
    "can't won't I'm you'll they've",
    "Unicode: café naïve — “quotes” 東京 Ελληνικά русский العربية हिन्दी 😀👍🏽",
    "Tabs\tand\nnewlines\n\n\nand trailing   ",
    "<|endoftext|>special in text<|im_start|>user<|im_sep|>hi<|im_end|>",
    "",
    "   ",
    "x" * 300,
]


def make_refa(out_dir, refa_dir, wikitext):
    d = os.path.join(out_dir, "refA")
    os.makedirs(d, exist_ok=True)
    tok = AutoTokenizer.from_pretrained(refa_dir)
    model = AutoModelForCausalLM.from_pretrained(refa_dir, dtype=torch.float32, attn_implementation="eager").eval()
    tensors = {}
    for i, text in enumerate(REFA_PROMPTS):
        ids = tok(text)["input_ids"]
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0, -1].float()
        seq, gaps = greedy(model, ids, 32)
        tensors[f"prompt.{i}"] = torch.tensor(ids, dtype=torch.int32)
        tensors[f"last_logits.{i}"] = logits.contiguous()
        tensors[f"greedy.{i}"] = torch.tensor(seq, dtype=torch.int32)
        tensors[f"gap.{i}"] = torch.tensor(gaps, dtype=torch.float32)
        print(repr(text), "->", repr(tok.decode(seq)))
    for i, text in enumerate(TOKENIZER_TEXTS):
        b = text.encode("utf-8")
        tensors[f"text.{i}"] = torch.tensor(list(b) if b else [0], dtype=torch.uint8)[: len(b) or 0]
        tensors[f"tok.{i}"] = torch.tensor(tok(text)["input_ids"] or [], dtype=torch.int32)
    save_file(tensors, os.path.join(d, "golden.safetensors"), metadata={
        "prompts": json.dumps(REFA_PROMPTS), "texts": json.dumps(TOKENIZER_TEXTS)})
    with open(wikitext, encoding="utf-8") as f:
        text = f.read()
    ids = tok(text)["input_ids"]
    save_file({"ids": torch.tensor(ids, dtype=torch.int32)}, os.path.join(d, "wikitext_ids.safetensors"))
    print(f"refA: {len(ids)} wikitext tokens")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--refa")
    ap.add_argument("--wikitext")
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", help="comma-separated case names to (re)generate")
    args = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    failed = 0
    only = set(args.only.split(",")) if args.only else None
    for k, (name, cfg, dtype, shard, lengths) in enumerate(cases()):
        if only is not None and name not in only:
            continue
        try:
            make_case(args.out, name, cfg, dtype, shard, lengths, seed=100 + k)
        except Exception:
            failed += 1
            print(f"{name}: FAILED", file=sys.stderr)
            traceback.print_exc()
    for extra, fn in (("torch_legacy", lambda: make_torch_legacy(args.out, 900)),
                      ("torch_strided", lambda: make_torch_strided(args.out)),
                      ("deepseek_v3_mla_fp8", lambda: make_deepseek_fp8(args.out, "deepseek_v3_mla_bf16", 901))):
        if only is not None and extra not in only:
            continue
        try:
            fn()
        except Exception:
            failed += 1
            print(f"{extra}: FAILED", file=sys.stderr)
            traceback.print_exc()
    if args.refa:
        try:
            make_refa(args.out, args.refa, args.wikitext)
        except Exception:
            failed += 1
            traceback.print_exc()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
