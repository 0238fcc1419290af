"""upg.finetune: end-to-end fine-tuning of a compressed model's continuous parameters (issue 14).

The codes of a UPG file are discrete and stay as they are. What is trained, against the original
model's next-token distributions on calibration text (loss: KL(original || compressed), the quantity
``upg eval kld`` reports), is what can be folded back into the file at no cost in size:

* a multiplier per output row of every weight matrix (embedding and LM head included): folded into
  the row's stored scales by ``upg apply-tuning`` (codes untouched, bits per weight unchanged);
* the RMSNorm weights and the biases (dense tensors): stored with their new values.

Command line (PyTorch from Debian: ``apt-get install python3-torch``)::

    python3 -m upg.finetune --base HF_DIR --model MODEL.upg --calib calib.txt -o TUNED.upg \\
        [--steps 200] [--lr 1e-3] [--batch 8] [--window 512] [--device auto|cpu|cuda]

Without the compiled module (another Python, a GPU machine) the same file runs as a script over a
decompressed copy (``upg decompress MODEL.upg --dtype f32 -o DIR``) and token ids (``--tokens
FILE.npy``), and writes only the tuned parameters (``--save-tuned FILE.safetensors``), which
``upg apply-tuning MODEL.upg FILE.safetensors -o TUNED.upg`` folds in.

The forward pass is this file's own (PyTorch, fp32 by default), for the Llama family: model types
llama, mistral, qwen2 and phi3 (Phi-3, Phi-4), RoPE default, linear, llama3 and su/longrope, partial
rotary, GQA, q/k/v biases, tied embeddings; it is tested against the transformers goldens of
tests/golden. Other architectures are refused with a message.

Held-out windows (the last ``--eval-windows`` of the calibration text) are scored before training,
every ``--eval-every`` steps and at the end; the parameters kept are those of the best score (never
worse than the file as it was).
"""

import argparse
import json
import math
import os
import struct
import sys
import tempfile
import time

import numpy as np

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2", "phi3")


def _import_torch():
    try:
        import torch
    except ImportError as e:  # pragma: no cover - depends on the machine
        raise RuntimeError("upg.finetune needs PyTorch (Debian: apt-get install python3-torch)") from e
    return torch


# --- safetensors (the format is a JSON header and raw little-endian arrays) -------------------------

_NP_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I32": np.int32, "I64": np.int64,
              "U8": np.uint8, "I8": np.int8}


def read_safetensors(path):
    """name -> float32 numpy array (floating tensors; BF16 widened exactly), plus the metadata dict."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise ValueError(f"{path}: not a safetensors file (shorter than 8 bytes)")
        n = struct.unpack("<Q", head)[0]
        if n > size - 8:
            raise ValueError(f"{path}: header length {n} runs past the end of the file ({size} bytes)")
        try:
            header = json.loads(f.read(n))
        except ValueError as e:
            raise ValueError(f"{path}: the header is not JSON ({e})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: the header is not a JSON object")
    meta = header.pop("__metadata__", {}) or {}
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    out = {}
    for name, v in header.items():
        a, b = v["data_offsets"]
        if not 0 <= a <= b <= size - 8 - n:
            raise ValueError(f"{path}: tensor '{name}' data offsets [{a}, {b}) are out of range")
        raw = np.asarray(mm[8 + n + a:8 + n + b])
        dt = v["dtype"]
        if dt == "BF16":
            arr = (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
        elif dt in _NP_DTYPES:
            arr = raw.view(_NP_DTYPES[dt])
        else:
            raise ValueError(f"{path}: tensor '{name}' has dtype {dt}, which fine-tuning does not read")
        shape = tuple(v["shape"])
        if arr.size != int(np.prod(shape, dtype=np.int64)):
            raise ValueError(f"{path}: tensor '{name}' holds {arr.size} values for shape {list(shape)}")
        out[name] = arr.reshape(shape).astype(np.float32) if arr.dtype.kind == "f" else arr.reshape(shape).copy()
    return out, meta


def write_safetensors(path, tensors, metadata=None):
    """Writes float32 tensors (name -> array) to `path` through a temporary file and a rename."""
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name], dtype="<f4")
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        blobs.append(a.tobytes())
        off += a.nbytes
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".tmp-", dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("<Q", len(h)) + h)
            for b in blobs:
                f.write(b)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_hf_weights(model_dir):
    """The tensors of a Hugging Face directory (model.safetensors or its sharded index) as float32."""
    single = os.path.join(model_dir, "model.safetensors")
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.isfile(single):
        return read_safetensors(single)[0]
    if os.path.isfile(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
        out = {}
        for fn in files:
            if "/" in fn or fn.startswith(".."):
                raise ValueError(f"{index}: shard name '{fn}' is not a plain file name")
            out.update(read_safetensors(os.path.join(model_dir, fn))[0])
        return out
    raise ValueError(f"{model_dir}: no model.safetensors or model.safetensors.index.json (a pytorch_model.bin "
                     "directory converts with `upg convert --to safetensors DIR OUT_DIR`)")


# --- the model ---------------------------------------------------------------------------------------

class ModelConfig:
    """What the forward pass needs from a config.json of the Llama family."""

    def __init__(self, cfg):
        mt = cfg.get("model_type")
        if mt not in SUPPORTED_MODEL_TYPES:
            raise ValueError(f"upg.finetune supports model types {', '.join(SUPPORTED_MODEL_TYPES)}, not {mt!r}")
        act = cfg.get("hidden_act", "silu")
        if act != "silu":
            raise ValueError(f"upg.finetune: activation {act!r} is not supported (only silu)")
        self.model_type = mt
        self.hidden = cfg["hidden_size"]
        self.heads = cfg["num_attention_heads"]
        self.kv_heads = cfg.get("num_key_value_heads") or self.heads
        self.head_dim = cfg.get("head_dim") or self.hidden // self.heads
        self.layers = cfg["num_hidden_layers"]
        self.eps = cfg.get("rms_norm_eps", 1e-6)
        self.tied = bool(cfg.get("tie_word_embeddings", False))
        self.fused = mt == "phi3"  # qkv_proj and gate_up_proj
        rp = cfg.get("rope_parameters") or {}
        rs = cfg.get("rope_scaling") or None
        if rs is None and rp.get("rope_type", "default") != "default":
            rs = rp
        self.rope_scaling = rs
        self.rope_theta = float(rp.get("rope_theta", cfg.get("rope_theta", 10000.0)))
        self.partial = float(rp.get("partial_rotary_factor", cfg.get("partial_rotary_factor", 1.0)))
        self.max_positions = cfg.get("max_position_embeddings")
        self.original_max = cfg.get("original_max_position_embeddings")
        sw = cfg.get("sliding_window")
        if mt == "qwen2" and not cfg.get("use_sliding_window", False):
            sw = None
        self.sliding_window = sw
        self.bos = cfg.get("bos_token_id")

    def rope(self, torch, T, device):
        """cos, sin tables [T, rotary dims] (the attention factor of su/longrope folded in)."""
        rd = int(self.head_dim * self.partial)
        rd -= rd % 2
        inv = 1.0 / (self.rope_theta ** (torch.arange(0, rd, 2, dtype=torch.float64) / rd))
        pos = torch.arange(T, dtype=torch.float64)
        attn_factor = 1.0
        rs = self.rope_scaling
        kind = (rs.get("rope_type") or rs.get("type")) if rs else "default"
        if kind == "linear":
            pos = pos / float(rs["factor"])
        elif kind == "llama3":
            factor, lo, hi = float(rs["factor"]), float(rs["low_freq_factor"]), float(rs["high_freq_factor"])
            old = float(rs["original_max_position_embeddings"])
            wavelen = 2 * math.pi / inv
            scaled = torch.where(wavelen > old / lo, inv / factor, inv)
            smooth = (old / wavelen - lo) / (hi - lo)
            smoothed = (1 - smooth) * scaled / factor + smooth * scaled
            medium = (wavelen >= old / hi) & (wavelen <= old / lo)
            inv = torch.where(medium, smoothed, scaled)
        elif kind in ("su", "longrope"):
            orig = rs.get("original_max_position_embeddings") or self.original_max
            ext = rs["long_factor"] if T > orig else rs["short_factor"]
            inv = inv / torch.tensor(ext, dtype=torch.float64)
            factor = rs.get("factor") or (self.max_positions / orig)
            attn_factor = rs.get("attention_factor") or (
                1.0 if factor <= 1 else math.sqrt(1 + math.log(factor) / math.log(orig)))
        elif kind != "default":
            raise ValueError(f"upg.finetune: RoPE type {kind!r} is not supported")
        f = torch.outer(pos, inv)
        emb = torch.cat([f, f], -1)
        return ((emb.cos() * attn_factor).float().to(device), (emb.sin() * attn_factor).float().to(device))


def _rotate(torch, x, cos, sin):
    rd = cos.shape[-1]
    xr, rest = x[..., :rd], x[..., rd:]
    a, b = xr.chunk(2, -1)
    xr = xr * cos + torch.cat([-b, a], -1) * sin
    return torch.cat([xr, rest], -1) if rest.shape[-1] else xr


def forward(torch, cfg, W, ids, tuned=None):
    """Logits [B, T, vocab] for token ids [B, T] (W: name -> tensor; tuned: name -> multiplier / new
    values, or None). Row multipliers apply after the matrix product (y = (x W^T) * m + bias)."""
    F = torch.nn.functional
    t = tuned or {}

    def vec(name):
        return t.get(name, W.get(name))

    def lin(name, x, bias=None):
        y = x @ W[name].t()
        if name in t:
            y = y * t[name]
        if bias is not None:
            b = vec(bias)
            if b is not None:
                y = y + b
        return y

    def rms(x, name):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + cfg.eps) * vec(name)

    B, T = ids.shape
    emb = "model.embed_tokens.weight"
    x = W[emb][ids]
    if emb in t:
        x = x * t[emb][ids].unsqueeze(-1)
    cos, sin = cfg.rope(torch, T, x.device)
    mask = torch.full((T, T), float("-inf"), device=x.device).triu(1)
    if cfg.sliding_window and cfg.sliding_window < T:
        mask = mask + torch.full((T, T), float("-inf"), device=x.device).tril(-cfg.sliding_window)
    nh, nkv, hd = cfg.heads, cfg.kv_heads, cfg.head_dim
    for layer in range(cfg.layers):
        p = f"model.layers.{layer}."
        h = rms(x, p + "input_layernorm.weight")
        if cfg.fused:
            q, k, v = lin(p + "self_attn.qkv_proj.weight", h).split([nh * hd, nkv * hd, nkv * hd], -1)
        else:
            q = lin(p + "self_attn.q_proj.weight", h, p + "self_attn.q_proj.bias")
            k = lin(p + "self_attn.k_proj.weight", h, p + "self_attn.k_proj.bias")
            v = lin(p + "self_attn.v_proj.weight", h, p + "self_attn.v_proj.bias")
        q = _rotate(torch, q.view(B, T, nh, hd).transpose(1, 2), cos, sin)
        k = _rotate(torch, k.view(B, T, nkv, hd).transpose(1, 2), cos, sin)
        v = v.view(B, T, nkv, hd).transpose(1, 2)
        k = k.repeat_interleave(nh // nkv, 1)
        v = v.repeat_interleave(nh // nkv, 1)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd) + mask, -1)
        o = (att @ v).transpose(1, 2).reshape(B, T, nh * hd)
        x = x + lin(p + "self_attn.o_proj.weight", o)
        h = rms(x, p + "post_attention_layernorm.weight")
        if cfg.fused:
            gate, up = lin(p + "mlp.gate_up_proj.weight", h).chunk(2, -1)
        else:
            gate, up = lin(p + "mlp.gate_proj.weight", h), lin(p + "mlp.up_proj.weight", h)
        x = x + lin(p + "mlp.down_proj.weight", F.silu(gate) * up)
    x = rms(x, "model.norm.weight")
    head = emb if cfg.tied and "lm_head.weight" not in W else "lm_head.weight"
    return lin(head, x)


def tunable(W):
    """(row-multiplied matrices, dense vectors given new values): the names fine-tuning trains."""
    mats = sorted(n for n, w in W.items() if w.dim() == 2)
    vecs = sorted(n for n, w in W.items() if w.dim() == 1 and (n.endswith("norm.weight") or n.endswith(".bias")))
    return mats, vecs


# --- training ----------------------------------------------------------------------------------------

def make_windows(tokens, window, bos):
    n = len(tokens) // window
    if n < 2:
        raise ValueError(f"calibration text too short: {len(tokens)} tokens make {n} windows of {window} "
                         "(at least 2 needed: one to train on, one to check)")
    w = np.asarray(tokens[:n * window], dtype=np.int64).reshape(n, window).copy()
    if bos is not None:
        w[:, 0] = bos  # as llama.cpp's KL-divergence windows and `upg eval kld`
    return w


def finetune(base_weights, model_weights, config, tokens, *, steps=200, lr=1e-3, batch=8, window=512,
             eval_windows=8, eval_every=None, device="cpu", dtype="float32", seed=0, threads=None, time_limit=None,
             log=None):
    """Trains row multipliers and norm/bias values. Returns (tuned: name -> numpy array, named as
    `upg apply-tuning` takes them, report dict)."""
    torch = _import_torch()
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    if threads:
        torch.set_num_threads(threads)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda: PyTorch sees no CUDA GPU")
    tdt = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    cfg = ModelConfig(config)
    missing = sorted(set(base_weights) ^ set(model_weights))
    if missing:
        raise ValueError(f"the original and the compressed model do not have the same tensors (first: {missing[0]})")
    for n in base_weights:
        if tuple(base_weights[n].shape) != tuple(model_weights[n].shape):
            raise ValueError(f"tensor '{n}': shape {list(base_weights[n].shape)} in the original, "
                             f"{list(model_weights[n].shape)} in the compressed model")
    P0 = {n: torch.from_numpy(np.ascontiguousarray(a)).to(device=device, dtype=tdt) for n, a in base_weights.items()}
    P1 = {n: torch.from_numpy(np.ascontiguousarray(a)).to(device=device, dtype=tdt) for n, a in model_weights.items()}
    mats, vecs = tunable(P1)
    params = {n: torch.ones(P1[n].shape[0], device=device, dtype=torch.float32, requires_grad=True) for n in mats}
    params.update({n: P1[n].float().clone().requires_grad_(True) for n in vecs})

    all_w = make_windows(tokens, window, cfg.bos)
    n_eval = min(eval_windows, max(1, len(all_w) // 4))
    train_w, eval_w = all_w[:-n_eval], all_w[-n_eval:]
    eval_every = eval_every or max(1, steps // 5)

    def as_tuned():
        return {n: p.to(tdt) for n, p in params.items()}

    def kl(lp0, lp1):
        return (lp0.exp() * (lp0 - lp1)).sum(-1)

    @torch.no_grad()
    def score(tuned):
        tot, top, cnt = 0.0, 0, 0
        for i in range(0, len(eval_w), batch):
            ids = torch.from_numpy(eval_w[i:i + batch]).to(device)
            lp0 = torch.log_softmax(forward(torch, cfg, P0, ids).float(), -1)
            lp1 = torch.log_softmax(forward(torch, cfg, P1, ids, tuned).float(), -1)
            tot += kl(lp0, lp1).sum().item()
            top += (lp0.argmax(-1) == lp1.argmax(-1)).sum().item()
            cnt += lp0.shape[0] * lp0.shape[1]
        return tot / cnt, top / cnt

    opt = torch.optim.Adam(list(params.values()), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    rng = np.random.default_rng(seed)
    t0 = time.time()
    kld0, top0 = score(None)
    log(f"finetune: {len(mats)} matrices (row multipliers), {len(vecs)} norms/biases; {len(train_w)} training "
        f"windows of {window}, {len(eval_w)} held out; {steps} steps of {batch} on {device}")
    log(f"finetune: held-out KLD before {kld0:.5f}, top-token {100 * top0:.2f}%")
    best = (kld0, top0, 0, {n: p.detach().clone() for n, p in params.items()}, True)
    history = [{"step": 0, "held_out_kld": kld0, "top_token": top0}]
    loss_sum, loss_n = 0.0, 0
    done = 0
    for step in range(1, steps + 1):
        idx = rng.choice(len(train_w), size=min(batch, len(train_w)), replace=False)
        ids = torch.from_numpy(train_w[idx]).to(device)
        with torch.no_grad():
            lp0 = torch.log_softmax(forward(torch, cfg, P0, ids).float(), -1)
        lp1 = torch.log_softmax(forward(torch, cfg, P1, ids, as_tuned()).float(), -1)
        loss = kl(lp0, lp1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        loss_sum += loss.item()
        loss_n += 1
        done = step
        out_of_time = time_limit is not None and time.time() - t0 > time_limit
        if step % eval_every == 0 or step == steps or out_of_time:
            kld, top = score(as_tuned())
            el = time.time() - t0
            log(f"finetune: step {step}/{steps}  train loss {loss_sum / loss_n:.5f}  held-out KLD {kld:.5f}  "
                f"top-token {100 * top:.2f}%  {el:.0f} s (about {el / step * (steps - step):.0f} s left)")
            history.append({"step": step, "train_loss": loss_sum / loss_n, "held_out_kld": kld, "top_token": top})
            loss_sum, loss_n = 0.0, 0
            if kld < best[0]:
                best = (kld, top, step, {n: p.detach().clone() for n, p in params.items()}, False)
        if out_of_time:
            log(f"finetune: time limit of {time_limit} s reached after {step} of {steps} steps")
            break
    kld, top, at, kept, untouched = best
    tuned = {}
    for n, p in kept.items():
        tuned[n + ".row_scale" if n in mats else n] = p.detach().float().cpu().numpy()
    report = {"steps": done, "kept_step": at, "lr": lr, "batch": batch, "window": window,
              "train_windows": len(train_w), "held_out_windows": len(eval_w), "device": device, "dtype": dtype,
              "seconds": round(time.time() - t0, 1), "held_out_kld_before": kld0, "held_out_kld_after": kld,
              "top_token_before": top0, "top_token_after": top, "history": history}
    if untouched:
        log("finetune: no evaluation beat the untrained parameters; keeping them (all multipliers 1)")
    return tuned, report


# --- command line ------------------------------------------------------------------------------------

def _parse(argv):
    ap = argparse.ArgumentParser(prog="python3 -m upg.finetune", description=(
        "Fine-tune a UPG model's row multipliers and norms against the original model's logits "
        "(KL divergence on calibration text), then fold them into a new UPG file."))
    ap.add_argument("--base", required=True, help="the original Hugging Face model directory")
    ap.add_argument("--model", required=True, help="the compressed model: a .upg file (or, without the compiled "
                    "module, the directory `upg decompress MODEL --dtype f32` wrote)")
    ap.add_argument("--calib", help="calibration text file (never the evaluation text)")
    ap.add_argument("--tokens", help="calibration token ids instead of --calib (.npy, 1-D integers)")
    ap.add_argument("--max-tokens", type=int, default=1 << 20, help="calibration tokens used at most (default 1048576)")
    ap.add_argument("-o", "--output", help="tuned UPG file to write (needs a .upg --model)")
    ap.add_argument("--save-tuned", help="also (or only) write the tuned parameters as safetensors, for "
                    "`upg apply-tuning`")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (cosine decay to a tenth)")
    ap.add_argument("--batch", type=int, default=8, help="windows per step")
    ap.add_argument("--window", type=int, default=512, help="tokens per window")
    ap.add_argument("--eval-windows", type=int, default=8, help="held-out calibration windows scored")
    ap.add_argument("--eval-every", type=int, default=0, help="steps between held-out scores (default steps/5)")
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="of the frozen weights")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads for PyTorch (default: its own)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--time-limit", type=float, default=0, help="stop training after this many seconds (the "
                    "best parameters so far are kept; default: none)")
    ap.add_argument("--force", action="store_true", help="replace outputs that exist")
    a = ap.parse_args(argv)
    if not a.output and not a.save_tuned:
        ap.error("nothing to write: give -o OUT.upg and/or --save-tuned FILE.safetensors")
    if (a.calib is None) == (a.tokens is None):
        ap.error("give exactly one of --calib TEXT and --tokens FILE.npy")
    for name in ("steps", "batch", "window", "eval_windows", "max_tokens"):
        if getattr(a, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be at least 1")
    if not a.lr > 0:
        ap.error("--lr must be positive")
    for out in (a.output, a.save_tuned):
        if out and os.path.exists(out) and not a.force:
            ap.error(f"{out} exists (--force replaces it)")
    return a


def _core():
    try:
        from upg import _upg
        return _upg
    except ImportError:
        return None


def main(argv=None):
    a = _parse(sys.argv[1:] if argv is None else argv)
    core = _core()
    for p, what in ((a.base, "--base"), (a.model, "--model")):
        if not os.path.exists(p):
            raise SystemExit(f"upg.finetune: {what} {p}: no such file or directory")
    with open(os.path.join(a.base, "config.json")) as f:
        config = json.load(f)
    base = load_hf_weights(a.base)
    if os.path.isdir(a.model) and not any(n.endswith(".upg") for n in os.listdir(a.model)):
        model = load_hf_weights(a.model)
        upg_model = None
    else:
        if core is None:
            raise SystemExit("upg.finetune: reading a .upg file needs the upg module (pip install ./python); "
                             "elsewhere pass the directory of `upg decompress MODEL --dtype f32`")
        reader = core.UpgTensors(a.model)
        model = {n: reader.decode(n) for n in reader.names()}
        upg_model = a.model
    if a.output and upg_model is None:
        raise SystemExit("upg.finetune: -o needs --model to be a .upg file (use --save-tuned, then upg apply-tuning)")
    if a.tokens:
        tokens = np.load(a.tokens)
        if tokens.ndim != 1 or tokens.dtype.kind not in "iu":
            raise SystemExit(f"upg.finetune: {a.tokens}: expected a 1-D array of integer token ids")
    else:
        if core is None:
            raise SystemExit("upg.finetune: --calib needs the upg module to tokenize; pass --tokens FILE.npy")
        import upg
        tok = upg.Model.load(upg_model or a.base).tokenizer
        with open(a.calib, encoding="utf-8", errors="replace") as f:
            tokens = np.asarray(tok.encode(f.read(), add_special_tokens=False), dtype=np.int64)
    tokens = tokens[:a.max_tokens]
    vocab = base["model.embed_tokens.weight"].shape[0]
    if len(tokens) and (tokens.min() < 0 or tokens.max() >= vocab):
        raise SystemExit(f"upg.finetune: token ids must be in [0, {vocab})")
    tuned, report = finetune(base, model, config, tokens, steps=a.steps, lr=a.lr, batch=a.batch, window=a.window,
                             eval_windows=a.eval_windows, eval_every=a.eval_every or None, device=a.device,
                             dtype=a.dtype, seed=a.seed, threads=a.threads or None,
                             time_limit=a.time_limit or None)
    meta = {"upg.tuning": json.dumps({k: v for k, v in report.items() if k != "history"})}
    if a.save_tuned:
        write_safetensors(a.save_tuned, tuned, meta)
        print(f"wrote {a.save_tuned}: {len(tuned)} tuned tensors")
    if a.output:
        tmp_dir = tempfile.mkdtemp(prefix="upg-finetune-")
        try:
            path = os.path.join(tmp_dir, "tuned.safetensors")
            write_safetensors(path, tuned, meta)
            r = core.apply_tuning(upg_model, path, a.output)
        finally:
            for n in os.listdir(tmp_dir):
                os.unlink(os.path.join(tmp_dir, n))
            os.rmdir(tmp_dir)
        print(f"wrote {r['path']}: rows of {r['rows_scaled']} matrices scaled, {r['replaced']} norms/biases replaced; "
              f"held-out KLD {report['held_out_kld_before']:.5f} -> {report['held_out_kld_after']:.5f} "
              f"(step {report['kept_step']} of {report['steps']}, {report['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
