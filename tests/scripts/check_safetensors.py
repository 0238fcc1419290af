#!/usr/bin/python3
"""Checks that files are valid safetensors files the way the reference (Rust) `safetensors` reader
does, without needing that package (Debian python3 + numpy only), and optionally the UPG rules.

Usage: check_safetensors.py [--align N] [--upg] FILE...

safetensors rules checked (as in safetensors/src/tensor.rs, SafeTensors::read_metadata / validate):
  8-byte little-endian header length N; N <= 100,000,000 and 8 + N <= file size; the header is
  UTF-8 JSON starting with '{' (trailing spaces allowed); "__metadata__", if present, maps strings
  to strings; every tensor has a known dtype, a shape of non-negative integers and data_offsets
  [begin, end] with end - begin == numel * dtype size; sorted by begin, the tensors cover the data
  section contiguously: the first begins at 0, each begins where the previous ends, and the last
  ends exactly at the end of the file. Then every tensor is read with numpy.
--align N: every tensor (except "__pad__." padding arrays and empty ones) starts at a multiple of N
  bytes from the start of the file.
--upg: metadata format == "upg", format_version 2.x, upg.tensors is JSON whose entries name
  existing arrays (each used once), and every non-"__pad__." array belongs to a tensor.
Prints one line per file; exits 1 on the first problem.
"""
import json
import struct
import sys

import numpy as np

DTYPES = {"BOOL": (1, np.bool_), "U8": (1, np.uint8), "I8": (1, np.int8), "F8_E5M2": (1, np.uint8),
          "F8_E4M3": (1, np.uint8), "I16": (2, np.int16), "U16": (2, np.uint16), "F16": (2, np.float16),
          "BF16": (2, np.uint16), "I32": (4, np.int32), "U32": (4, np.uint32), "F32": (4, np.float32),
          "F64": (8, np.float64), "I64": (8, np.int64), "U64": (8, np.uint64)}
MAX_HEADER = 100_000_000


def fail(path, msg):
    print(f"{path}: INVALID: {msg}")
    sys.exit(1)


def check(path, align, upg):
    with open(path, "rb") as f:
        buf = f.read()
    if len(buf) < 8:
        fail(path, "shorter than 8 bytes")
    (n,) = struct.unpack("<Q", buf[:8])
    if n > MAX_HEADER:
        fail(path, f"header length {n} exceeds {MAX_HEADER}")
    if 8 + n > len(buf):
        fail(path, f"header length {n} runs past the end of the file ({len(buf)} bytes)")
    try:
        text = buf[8:8 + n].decode("utf-8")
    except UnicodeDecodeError as e:
        fail(path, f"header is not UTF-8: {e}")
    if not text.startswith("{"):
        fail(path, "header does not start with '{'")
    try:
        header = json.loads(text)
    except json.JSONDecodeError as e:
        fail(path, f"header is not JSON: {e}")
    meta = header.pop("__metadata__", None)
    if meta is not None:
        if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
            fail(path, "__metadata__ must map strings to strings")
    data_start = 8 + n
    data_len = len(buf) - data_start
    entries = []
    for name, info in header.items():
        if not isinstance(info, dict):
            fail(path, f"tensor {name!r}: entry is not an object")
        dt = info.get("dtype")
        shape = info.get("shape")
        offs = info.get("data_offsets")
        if dt not in DTYPES:
            fail(path, f"tensor {name!r}: unknown dtype {dt!r}")
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            fail(path, f"tensor {name!r}: bad shape {shape!r}")
        if not (isinstance(offs, list) and len(offs) == 2 and all(isinstance(o, int) and o >= 0 for o in offs)):
            fail(path, f"tensor {name!r}: bad data_offsets {offs!r}")
        numel = 1
        for d in shape:
            numel *= d
        if offs[1] - offs[0] != numel * DTYPES[dt][0]:
            fail(path, f"tensor {name!r}: data_offsets {offs} do not match shape {shape} x {dt}")
        entries.append((offs[0], offs[1], name, dt, shape))
    entries.sort()
    pos = 0
    for b, e, name, _, _ in entries:
        if b != pos:
            fail(path, f"tensor {name!r} begins at {b}, expected {pos} (data section not contiguous)")
        pos = e
    if pos != data_len:
        fail(path, f"tensors end at {pos}, the data section has {data_len} bytes")
    for b, e, name, dt, shape in entries:
        if align and (data_start + b) % align and not name.startswith("__pad__.") and e > b:
            fail(path, f"tensor {name!r} starts at file offset {data_start + b}, not a multiple of {align}")
        arr = np.frombuffer(buf, dtype=DTYPES[dt][1], count=(e - b) // DTYPES[dt][0], offset=data_start + b)
        arr.reshape(shape)
    ntensors = len(entries)
    if upg:
        if meta is None or meta.get("format") != "upg":
            fail(path, "metadata 'format' is not 'upg'")
        if not meta.get("format_version", "").startswith("2."):
            fail(path, f"format_version {meta.get('format_version')!r} is not 2.x")
        try:
            table = json.loads(meta["upg.tensors"])
        except (KeyError, json.JSONDecodeError) as e:
            fail(path, f"upg.tensors missing or not JSON: {e}")
        used = set()
        for tname, t in table.items():
            for role, arr in t["arrays"].items():
                if arr not in header:
                    fail(path, f"tensor {tname!r} role {role!r}: array {arr!r} missing")
                if arr in used:
                    fail(path, f"array {arr!r} used twice")
                used.add(arr)
        for name in header:
            if not name.startswith("__pad__.") and name not in used:
                fail(path, f"array {name!r} belongs to no tensor")
        ntensors = len(table)
    print(f"{path}: OK ({len(entries)} arrays, {ntensors} tensors, header {n} bytes, data {data_len} bytes)")


def main(argv):
    align, upg, files = 0, False, []
    i = 0
    while i < len(argv):
        if argv[i] == "--align":
            align = int(argv[i + 1])
            i += 2
            continue
        if argv[i] == "--upg":
            upg = True
        else:
            files.append(argv[i])
        i += 1
    if not files:
        print(__doc__)
        return 2
    for f in files:
        check(f, align, upg)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
