#!/usr/bin/python3
"""Writes every tensor of a UPG file of trellis and dense tensors, decoded to float32, as a Hugging Face
directory (model.safetensors + the given config.json), with the numpy reference decoder of this folder
and upg.finetune's safetensors writer: the compressed model as `upg.finetune --model DIR` reads it,
on a machine without UPG's build (the GPU machine). Equal to `upg decompress FILE --dtype f32` within
1e-7 relative (the rotation is undone in a different order).

    decode_to_safetensors.py FILE.upg OUT_DIR CONFIG.json
"""
import os
import shutil
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "python", "upg"))
import finetune as ft  # noqa: E402
import trellis_decode as td  # noqa: E402


def main(src, out, config):
    t0 = time.time()
    f = td.UpgFile(src)
    W = {}
    for n, t in f.tensors.items():
        if t["codec"] == "trellis":
            W[n] = np.asarray(td.decode_tensor(f, n), dtype=np.float32)
        elif t["codec"] in ("bf16", "f16", "f32"):
            a = f.array(n, "data")[0]
            v = (a.astype(np.uint32) << 16).view(np.float32) if t["codec"] == "bf16" else a.astype(np.float32)
            W[n] = v.reshape(t["shape"])
        else:
            raise SystemExit(f"{src}: tensor '{n}': codec {t['codec']} is not decoded here (trellis and dense only)")
    os.makedirs(out, exist_ok=True)
    ft.write_safetensors(os.path.join(out, "model.safetensors"), W)
    shutil.copy(config, os.path.join(out, "config.json"))
    print(f"decoded {src}: {len(W)} tensors in {time.time() - t0:.1f} s")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    main(*sys.argv[1:])
