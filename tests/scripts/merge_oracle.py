#!/usr/bin/python3
"""Independent numpy implementation of the merge formulas `upg merge` implements (mergekit's linear,
SLERP, task arithmetic and TIES), used by test_merge_numpy.sh. Needs only Debian's python3 + numpy.

  merge_oracle.py make DIR                 writes tiny same-shape checkpoints DIR/base, DIR/a, DIR/b
                                           (F32, random; a and b are base plus task vectors) and DIR/other_arch
  merge_oracle.py check RECIPE OUT_DIR     recomputes every tensor of the recipe in float64 and compares it
                                           with OUT_DIR (F32: relative error <= 1e-6; BF16/F16: <= 1 unit
                                           in the last place of the output dtype)
  merge_oracle.py same DIR_A DIR_B         every tensor of DIR_B has the same name, dtype, shape and bytes
                                           as in DIR_A

The formulas, written from mergekit's definitions (mergekit/merge_methods/linear.py, slerp.py,
generalized_task_arithmetic.py, sparsify.py), not from upg's code:
  linear: sum w_i x_i (/ sum w_i when normalize, default true)
  slerp: v0 = base_model (or the first model), v1 = the other; directions v/|v| (unless |v| <= 1e-8);
         |dot| > 0.9995: (1-t) v0 + t v1; else sin((1-t)a)/sin(a) v0 + sin(t a)/sin(a) v1, a = acos(dot)
  task_arithmetic: base + lambda * sum w_i (x_i - base) (/ sum w_i when normalize, default false;
         |sum| < 1e-8 -> 1)
  ties: d_i = x_i - base (float32, as mergekit computes in fp32), keep the int(density * n) largest |d_i|
        (stable order: the lower index first among equals); e_i = w_i d_i; s = sign(sum e_i) (0 -> +);
        keep e_i with sign(e_i) == s; sum kept / sum of kept w_i (0 -> 1) when normalize (default true);
        base + lambda * that
Prints one line per tensor checked and a summary with the largest error; exits 1 on a mismatch.
"""
import json
import os
import struct
import sys

import numpy as np

NP = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "BF16": np.uint16, "I64": np.int64,
      "I32": np.int32, "U8": np.uint8, "BOOL": np.bool_}
SIZE = {"F32": 4, "F64": 8, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "U8": 1, "BOOL": 1}


# ------------------------------------------------------------------ safetensors files

def write_safetensors(path, tensors):
    """tensors: name -> numpy array (float32, int64, ...), or name -> ("BF16", uint16 array)."""
    header, blobs, off = {}, [], 0
    for name, arr in tensors.items():
        if isinstance(arr, tuple):
            dt, arr = arr
        else:
            dt = {np.dtype(np.float32): "F32", np.dtype(np.int64): "I64", np.dtype(np.float16): "F16"}[arr.dtype]
        raw = np.ascontiguousarray(arr).tobytes()
        header[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header).encode()
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def read_dir(d):
    """name -> (dtype name, shape, raw bytes) for every tensor of a HF directory (sharded or not)."""
    files = []
    idx = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(idx):
        with open(idx) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    out = {}
    for fn in files:
        with open(os.path.join(d, fn), "rb") as f:
            buf = f.read()
        (n,) = struct.unpack("<Q", buf[:8])
        header = json.loads(buf[8:8 + n])
        header.pop("__metadata__", None)
        base = 8 + n
        for name, h in header.items():
            b, e = h["data_offsets"]
            out[name] = (h["dtype"], tuple(h["shape"]), buf[base + b:base + e])
    return out


def to_f32(dt, shape, raw):
    if dt == "BF16":
        u = np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16
        return u.view(np.float32).reshape(shape)
    return np.frombuffer(raw, dtype=NP[dt]).astype(np.float32).reshape(shape)


def f32_to_bf16_bits(x):
    u = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    r = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return r.astype(np.uint16)


# ------------------------------------------------------------------ the formulas

def linear(xs, ws, normalize):
    acc = sum(w * x.astype(np.float64) for w, x in zip(ws, xs))
    return acc / sum(ws) if normalize else acc


def slerp(t, v0, v1, threshold=0.9995, eps=1e-8):
    a, b = v0.astype(np.float64).ravel(), v1.astype(np.float64).ravel()
    na, nb = np.sqrt(np.sum(a * a)), np.sqrt(np.sum(b * b))
    ua = a / na if na > eps else a
    ub = b / nb if nb > eps else b
    dot = float(np.sum(ua * ub))
    if abs(dot) > threshold:
        res, branch = (1 - t) * a + t * b, "lerp"
    else:
        theta = np.arccos(dot)
        res = np.sin(theta * (1 - t)) / np.sin(theta) * a + np.sin(theta * t) / np.sin(theta) * b
        branch = "slerp"
    return res.reshape(v0.shape), branch, dot


def trim(delta, density):
    if density >= 1:
        return delta
    flat = delta.ravel()
    k = int(density * flat.size)
    assert k > 0
    keep = np.argsort(-np.abs(flat), kind="stable")[:k]
    mask = np.zeros(flat.size, dtype=bool)
    mask[keep] = True
    return np.where(mask, flat, 0).reshape(delta.shape)


def task_vectors(base, xs):
    # x - base in float32, as mergekit does when it computes in fp32
    return [(x.astype(np.float32) - base.astype(np.float32)).astype(np.float64) for x in xs]


def task_arithmetic(base, xs, ws, lam, normalize):
    ds = task_vectors(base, xs)
    mixed = sum(w * d for w, d in zip(ws, ds))
    div = sum(ws)
    if abs(div) < 1e-8:
        div = 1.0
    if normalize:
        mixed = mixed / div
    return base.astype(np.float64) + lam * mixed


def ties(base, xs, ws, densities, lam, normalize):
    ds = [trim(d, dens) for d, dens in zip(task_vectors(base, xs), densities)]
    e = np.stack([w * d for w, d in zip(ws, ds)])
    wv = np.array(ws, dtype=np.float64).reshape((-1,) + (1,) * base.ndim)
    majority = np.where(e.sum(axis=0) >= 0, 1.0, -1.0)
    mask = np.sign(e) == majority
    mixed = (e * mask).sum(axis=0)
    div = (wv * mask).sum(axis=0)
    div[div == 0] = 1.0
    if normalize:
        mixed = mixed / div
    conflicts = int(np.sum((mask.sum(axis=0) < np.count_nonzero(e, axis=0))))
    return base.astype(np.float64) + lam * mixed, conflicts


# ------------------------------------------------------------------ commands

def make(root):
    rng = np.random.default_rng(1234)
    shapes = {"model.embed_tokens.weight": (32, 16), "model.layers.0.mlp.down_proj.weight": (16, 24),
              "model.norm.weight": (16,), "near_parallel.weight": (8, 8), "anti_parallel.weight": (6,),
              "conflict.weight": (64,), "equal_magnitudes.weight": (10,), "zero.bias": (5,)}
    base = {n: rng.standard_normal(s).astype(np.float32) for n, s in shapes.items()}
    base["model.norm.weight"] += 1
    base["zero.bias"][:] = 0
    base["equal_magnitudes.weight"][:] = 0.5
    a, b = {}, {}
    for n, s in shapes.items():
        a[n] = (base[n] + 0.1 * rng.standard_normal(s)).astype(np.float32)
        b[n] = (base[n] + 0.1 * rng.standard_normal(s)).astype(np.float32)
    # b nearly parallel to a: SLERP's fallback to linear interpolation (|cos| > 0.9995).
    a["near_parallel.weight"] = rng.standard_normal((8, 8)).astype(np.float32)
    b["near_parallel.weight"] = (1.7 * a["near_parallel.weight"] + 0.04 * rng.standard_normal((8, 8))).astype(np.float32)
    b["anti_parallel.weight"] = (-2 * a["anti_parallel.weight"]).astype(np.float32)
    # Task vectors of opposite signs with mixed magnitudes: TIES sign election has conflicts to resolve.
    da = rng.standard_normal(64).astype(np.float32)
    db = (-da * rng.uniform(0.5, 2.0, 64) + 0.05 * rng.standard_normal(64)).astype(np.float32)
    a["conflict.weight"] = base["conflict.weight"] + da
    b["conflict.weight"] = base["conflict.weight"] + db
    # Task vectors of equal magnitude (exactly representable): trimming must break ties by index.
    a["equal_magnitudes.weight"] = (base["equal_magnitudes.weight"] + np.where(np.arange(10) % 3 == 0, -0.25, 0.25)).astype(np.float32)
    b["equal_magnitudes.weight"] = (base["equal_magnitudes.weight"] + 0.25).astype(np.float32)
    a["zero.bias"][:] = 0  # a zero vector (norm below eps) in SLERP
    ids = np.arange(12, dtype=np.int64)  # an integer tensor: copied, never merged
    for name, t, arch in (("base", base, "LlamaForCausalLM"), ("a", a, "LlamaForCausalLM"), ("b", b, "LlamaForCausalLM"),
                          ("other_arch", b, "Qwen2ForCausalLM")):
        d = os.path.join(root, name)
        os.makedirs(d, exist_ok=True)
        cfg = {"architectures": [arch], "model_type": "llama" if arch.startswith("Llama") else "qwen2",
               "hidden_size": 16, "torch_dtype": "float32"}
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
        with open(os.path.join(d, "tokenizer.json"), "w") as f:
            json.dump({"model": "tiny" if arch.startswith("Llama") else "other"}, f)
        write_safetensors(os.path.join(d, "model.safetensors"), {**t, "buf.position_ids": ids})
    print(f"made tiny checkpoints in {root}: base, a, b (same shape), other_arch")


def norm(p):
    return os.path.realpath(p)


def check(recipe_path, out_dir):
    with open(recipe_path) as f:
        r = json.load(f)
    # mergekit's layout: merge_method and "parameters" objects.
    method = r.get("method", r.get("merge_method"))
    params = dict(r.get("parameters", {}))
    for k in ("t", "normalize", "lambda"):
        if k in r:
            params[k] = r[k]
    models = []
    for m in r["models"]:
        p = dict(m.get("parameters", {}))
        p.update({k: v for k, v in m.items() if k != "parameters"})
        models.append(p)
    base = r.get("base_model")
    others = [m for m in models if base is None or norm(m["model"]) != norm(base)]
    ref_dir = base if base else models[0]["model"]
    dirs = {m["model"]: read_dir(m["model"]) for m in models}
    if base:
        dirs[base] = read_dir(base)
    got = read_dir(out_dir)
    ref_tensors = dirs[ref_dir]
    assert set(got) == set(ref_tensors), f"tensor names differ: {sorted(set(got) ^ set(ref_tensors))}"
    out_dtype = {"bfloat16": "BF16", "float16": "F16", "float32": "F32", None: None}[r.get("dtype")]
    worst = 0.0
    bad = 0
    for name in sorted(ref_tensors):
        dt0, shape, raw0 = ref_tensors[name]
        gdt, gshape, graw = got[name]
        if dt0 not in ("F32", "F16", "BF16", "F64"):
            if (gdt, gshape, graw) != (dt0, shape, raw0):
                print(f"FAIL {name}: integer tensor not copied unchanged")
                bad += 1
            continue
        want_dt = out_dtype or dt0
        if gdt != want_dt or gshape != shape:
            print(f"FAIL {name}: got {gdt} {gshape}, expected {want_dt} {shape}")
            bad += 1
            continue
        x = lambda d: to_f32(*dirs[d][name])  # noqa: E731
        note = ""
        if method == "linear":
            ref = linear([x(m["model"]) for m in models], [m["weight"] for m in models], params.get("normalize", True))
        elif method == "slerp":
            v0, v1 = (base, others[0]["model"]) if base else (models[0]["model"], models[1]["model"])
            ref, branch, dot = slerp(params.get("t", 0.5), x(v0), x(v1))
            note = f" {branch} (cos {dot:+.6f})"
        elif method == "task_arithmetic":
            ref = task_arithmetic(x(base), [x(m["model"]) for m in others], [m["weight"] for m in others],
                                  params.get("lambda", 1.0), params.get("normalize", False))
        elif method == "ties":
            ref, conflicts = ties(x(base), [x(m["model"]) for m in others], [m["weight"] for m in others],
                                  [m.get("density", 1.0) for m in others], params.get("lambda", 1.0),
                                  params.get("normalize", True))
            note = f" {conflicts} sign conflicts"
        else:
            sys.exit(f"unknown method {method}")
        g = to_f32(gdt, gshape, graw).astype(np.float64)
        if gdt == "F32":
            err = np.abs(g - ref) / np.maximum(np.abs(ref), 1e-30)
            err[np.abs(g - ref) <= 1e-12] = 0
            e = float(err.max(initial=0))
            ok = e <= 1e-6
        else:  # within one unit in the last place of the output dtype
            if gdt == "BF16":
                want = to_f32("BF16", shape, f32_to_bf16_bits(ref.astype(np.float32)).tobytes()).astype(np.float64)
                ulp = np.maximum(np.abs(want), 1e-30) * 2.0 ** -7
            else:
                want = ref.astype(np.float32).astype(np.float16).astype(np.float64)
                ulp = np.maximum(np.abs(want), 6e-8) * 2.0 ** -10
            e = float((np.abs(g - want) / ulp).max(initial=0))
            ok = e <= 1.0
        worst = max(worst, e)
        print(f"{'ok  ' if ok else 'FAIL'} {method} {name} {gdt} {list(shape)}: max error {e:.3g}"
              f"{' ulp' if gdt != 'F32' else ' relative'}{note}")
        bad += not ok
    print(f"{method}: {len(ref_tensors)} tensors checked against numpy, worst error {worst:.3g}, {bad} failure(s)")
    sys.exit(1 if bad else 0)


def same(a, b):
    ta, tb = read_dir(a), read_dir(b)
    if set(ta) != set(tb):
        sys.exit(f"FAIL: tensor names differ: {sorted(set(ta) ^ set(tb))[:5]}")
    diff = [n for n in ta if ta[n] != tb[n]]
    if diff:
        sys.exit(f"FAIL: {len(diff)} tensor(s) differ, first {diff[0]}")
    print(f"same: all {len(ta)} tensors bit-identical")


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "make" and len(sys.argv) == 3:
        make(sys.argv[2])
    elif cmd == "check" and len(sys.argv) == 4:
        check(sys.argv[2], sys.argv[3])
    elif cmd == "same" and len(sys.argv) == 4:
        same(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
