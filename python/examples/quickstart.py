#!/usr/bin/env python3
"""UPG from Python in one page: load a model, generate (plain, streamed, chat), read logits and
log-probabilities, compress it and measure what the compression cost.

    python3 python/examples/quickstart.py [MODEL_DIR] [--convert]

MODEL_DIR defaults to ../shared/data/models/refA-phi3-26m, else the bundled models/upg-tiny-phi3.
--convert also compresses the model to 4 bits per weight in a temporary folder (52 s for refA on 2
cores) and compares it with the original (KL divergence on a short text).
"""

import os
import sys
import tempfile

import numpy as np

import upg

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def default_model():
    for p in (os.path.join(REPO, "..", "shared", "data", "models", "refA-phi3-26m"),
              os.path.join(REPO, "models", "upg-tiny-phi3")):
        if os.path.exists(os.path.join(p, "config.json")):
            return os.path.normpath(p)
    sys.exit("give a model directory: quickstart.py MODEL_DIR")


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    path = args[0] if args else default_model()
    print(f"upg {upg.__version__}")

    # Loading: a Hugging Face directory or a .upg file, memory-mapped.
    model = upg.Model.load(path)
    print(model)
    print(f"  {model.architecture}, {model.parameters:,} parameters, context {model.max_context}, "
          f"{len(model.codecs)} tensors stored as {sorted(set(model.codecs.values()))}")

    # Generation: greedy (temperature=0) equals `upg run MODEL -p PROMPT --temp 0`.
    prompt = "The history of the city"
    print("\ngreedy:  ", prompt + model.generate(prompt, max_tokens=32, temperature=0))
    stats = model.last_stats
    print(f"  ({stats['generated_tokens']} tokens, {stats['generation_tokens_per_second']:.0f} tok/s, "
          f"stop: {stats['stop_reason']})")

    # Streaming: pieces of text as they are produced; sampling with a seed is reproducible.
    print("sampled: ", prompt, end="", flush=True)
    for piece in model.generate(prompt, max_tokens=32, temperature=0.8, top_p=0.95, seed=1, stream=True):
        print(piece, end="", flush=True)
    print()

    # Chat: messages go through the model's chat template.
    if model.tokenizer.chat_template:
        reply = model.generate([{"role": "user", "content": "What is a city?"}], max_tokens=24, temperature=0)
        print("chat:    ", reply.strip())

    # Logits (numpy, one row per position) and log-probabilities of a text.
    ids = model.tokenizer.encode("The cat sat on the mat.")
    logits = model.logits(ids)
    print(f"\nlogits {logits.shape}; next token after the text: {model.tokenizer.decode([int(logits[-1].argmax())])!r}")
    lp = model.score("The cat sat on the mat.")
    print(f"log-likelihood {lp.sum():.2f} nats over {lp.size} tokens (perplexity {np.exp(-lp.mean()):.1f})")
    batch = model.logits([ids, ids[:3]])  # several sequences in one batch
    print(f"batched: {[b.shape for b in batch]}")

    # Compression and its cost.
    if "--convert" in sys.argv and model.format == "hf":
        text = ("The city was founded in the twelfth century on the banks of the river. Its cathedral, "
                "markets and university made it the region's centre of trade and learning. ") * 40
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "model-4bit.upg")
            # A short candidate list keeps this quick; without `candidates` the converter tries its
            # whole list (what `upg convert --bpw` does: better files, minutes instead of seconds).
            report = upg.convert(path, out, bpw=4.0, calib_text=text, calib_tokens=2048, probe_windows=2,
                                 candidates=["codebook:bits=3,group=128,levels=gaussian,rotate=true",
                                             "codebook:bits=4,group=128,levels=gaussian,rotate=true",
                                             "int8:group=128"])
            print(f"\nconverted: {report['file_bytes'] / 1e6:.1f} MB, {report['bits_per_weight']:.3f} bits per weight")
            info = upg.info(out)
            print("codecs:", {k: v["tensors"] for k, v in info["codecs"].items()})
            small = upg.Model.load(out)
            print("greedy (compressed):", prompt + small.generate(prompt, max_tokens=24, temperature=0))
            kld = upg.eval.kld(model, small, text=text * 4, ctx=128, progress=False)
            print(f"KL divergence {kld['kld_mean']['value']:.4f}, same top token "
                  f"{100 * kld['same_top']['value']:.1f}% ({kld['tokens']} tokens)")


if __name__ == "__main__":
    main()
