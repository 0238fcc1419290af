#!/usr/bin/env python3
"""Train UPG's bundled default model: a small Phi3ForCausalLM (the architecture of Phi-4) with a
byte-level BPE tokenizer using the cl100k-style pre-tokenizer, on English Wikipedia text.

Runs on a GPU machine with torch, transformers and tokenizers (about 5 minutes on one H100).
Writes a Hugging Face model directory (config.json, model.safetensors in bf16, tokenizer.json,
tokenizer_config.json, generation_config.json, chat_template.jinja) of at most 10 MB.

Usage: python3 tools/train_tiny_model.py --corpus wiki_corpus.tar.xz --out models/upg-tiny-phi3 [--seconds 270]

--arch mixtral trains a mixture of experts of the same attention and width instead (8 experts of
intermediate 320, top 2: the active MLP width equals the dense model's 640; router load-balancing
loss 0.02), --arch llama a dense Llama of the Phi-3 model's sizes: the pair UPG compares to measure
what compression costs a mixture of experts beside a dense model of the same active size
(docs/ARCHITECTURES.md).
"""
import argparse
import glob
import json
import math
import os
import tarfile
import tempfile
import time

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (LlamaConfig, LlamaForCausalLM, MixtralConfig, MixtralForCausalLM, Phi3Config,
                          Phi3ForCausalLM)

SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
         r"|\s*[\r\n]+|\s+(?!\S)|\s+")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_sep|>", "<|im_end|>", "<|dummy_0|>"]
CHAT_TEMPLATE = ("{% for m in messages %}{{'<|im_start|>' + m['role'] + '<|im_sep|>' + m['content'] + "
                 "'<|im_end|>'}}{% endfor %}{% if add_generation_prompt %}{{'<|im_start|>assistant<|im_sep|>'}}"
                 "{% endif %}")


def train_tokenizer(files, vocab_size):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train(files, trainer)
    return tok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seconds", type=float, default=270)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--arch", choices=["phi3", "mixtral", "llama"], default="phi3")
    args = ap.parse_args()
    torch.manual_seed(0)
    dev = "cuda"

    tmp = tempfile.mkdtemp()
    with tarfile.open(args.corpus) as tf:
        tf.extractall(tmp)
    files = sorted(glob.glob(os.path.join(tmp, "**", "*.txt"), recursive=True))
    t0 = time.time()
    tok = train_tokenizer(files, args.vocab)
    print(f"tokenizer: {tok.get_vocab_size()} tokens in {time.time() - t0:.1f}s", flush=True)

    eot = tok.token_to_id("<|endoftext|>")
    ids = []
    for f in files:
        with open(f, encoding="utf-8") as fh:
            arts = [a.strip() for a in fh.read().split("\n\n") if a.strip()]
        for enc in tok.encode_batch(arts):
            ids.extend(enc.ids)
            ids.append(eot)
    data = torch.tensor(ids, dtype=torch.long)
    n_val = 200_000
    train, val = data[:-n_val].to(dev), data[-n_val:].to(dev)
    print(f"corpus: {len(files)} files, {len(ids)} tokens ({time.time() - t0:.1f}s)", flush=True)

    common = dict(vocab_size=args.vocab, hidden_size=256, num_hidden_layers=5, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=1024, rms_norm_eps=1e-5, tie_word_embeddings=True,
                  bos_token_id=eot, eos_token_id=eot, pad_token_id=tok.token_to_id("<|dummy_0|>"),
                  attention_dropout=0.0, initializer_range=0.02)
    if args.arch == "phi3":
        cfg = Phi3Config(intermediate_size=640, original_max_position_embeddings=1024, resid_pdrop=0.0,
                         embd_pdrop=0.0, **common)
        model = Phi3ForCausalLM(cfg).to(dev)
    elif args.arch == "mixtral":
        cfg = MixtralConfig(intermediate_size=320, num_local_experts=8, num_experts_per_tok=2, sliding_window=None,
                            router_aux_loss_coef=0.02, output_router_logits=True, router_jitter_noise=0.0,
                            rope_theta=10000.0, **common)
        model = MixtralForCausalLM(cfg).to(dev)
    else:
        cfg = LlamaConfig(intermediate_size=640, rope_theta=10000.0, **common)
        model = LlamaForCausalLM(cfg).to(dev)
    nparams = sum(p.numel() for p in model.parameters())
    print(f"model: {nparams} parameters", flush=True)

    seq, batch, lr_max, warm = 256, 128, 3e-3, 200
    opt = torch.optim.AdamW(model.parameters(), lr=lr_max, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
    est_steps = None
    step, t_start = 0, time.time()

    def batch_of(src, b):
        ix = torch.randint(0, len(src) - seq - 1, (b,), device=dev)
        x = torch.stack([src[i:i + seq + 1] for i in ix])
        return x[:, :-1], x[:, 1:]

    def val_loss():
        model.eval()
        g = torch.Generator(device=dev).manual_seed(1)
        tot = 0.0
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            for _ in range(20):
                ix = torch.randint(0, len(val) - seq - 1, (32,), device=dev, generator=g)
                x = torch.stack([val[i:i + seq + 1] for i in ix])
                lg = model(input_ids=x[:, :-1]).logits.float()
                tot += torch.nn.functional.cross_entropy(lg.reshape(-1, lg.size(-1)), x[:, 1:].reshape(-1)).item()
        model.train()
        return tot / 20

    model.train()
    while True:
        el = time.time() - t_start
        if el > args.seconds:
            break
        if step == 50:
            est_steps = int(args.seconds / (el / 50))
        total = est_steps or 10**9
        lr = lr_max * min(1.0, (step + 1) / warm) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, step / total))))
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = batch_of(train, batch)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = model(input_ids=x)
            logits = out.logits
            loss = torch.nn.functional.cross_entropy(logits.float().view(-1, logits.size(-1)), y.reshape(-1))
            if getattr(out, "aux_loss", None) is not None:  # the mixture's load-balancing loss
                loss = loss + cfg.router_aux_loss_coef * out.aux_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 500 == 0:
            print(f"step {step} loss {loss.item():.3f} lr {lr:.2e} {el:.0f}s", flush=True)
        step += 1
    vl = val_loss()
    print(f"done: {step} steps, {step * batch * seq / 1e6:.0f}M tokens, val loss {vl:.3f} (ppl {math.exp(vl):.1f})")

    os.makedirs(args.out, exist_ok=True)
    model = model.to(torch.bfloat16)
    if args.arch == "mixtral":
        model.config.output_router_logits = False
    model.save_pretrained(args.out, safe_serialization=True)
    tok.save(os.path.join(args.out, "tokenizer.json"))
    with open(os.path.join(args.out, "tokenizer_config.json"), "w") as f:
        json.dump({"backend": "tokenizers", "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
                   "pad_token": "<|dummy_0|>", "tokenizer_class": "GPT2Tokenizer", "add_bos_token": False,
                   "model_max_length": 1024}, f, indent=2)
    with open(os.path.join(args.out, "chat_template.jinja"), "w") as f:
        f.write(CHAT_TEMPLATE)
    with open(os.path.join(args.out, "training.json"), "w") as f:
        json.dump({"script": "tools/train_tiny_model.py", "corpus": "wiki_corpus files wiki_000..wiki_009",
                   "tokens": len(ids), "steps": step, "batch": batch, "seq": seq, "seconds": args.seconds,
                   "val_loss": vl, "params": nparams, "arch": args.arch}, f, indent=2)
    # Sample from it so the log shows what the demo will print.
    model.eval()
    prompt = tok.encode("The history of the city").ids
    out = model.generate(torch.tensor([prompt], device=dev), max_new_tokens=40, do_sample=False)
    print("sample:", tok.decode(out[0].tolist()))


if __name__ == "__main__":
    main()
