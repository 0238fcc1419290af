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
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif pname.endswith(".bias"):
                p.copy_(0.1 * torch.randn_like(p))
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
    if args.refa:
        try:
            make_refa(args.out, args.refa, args.wikitext)
        except Exception:
            failed += 1
            traceback.print_exc()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
