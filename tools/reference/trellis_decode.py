#!/usr/bin/python3
"""Independent reference decoder of the `trellis` codec, written from docs/CODECS.md and docs/FORMAT.md
only (no C++ source was read). numpy only.

    trellis_decode.py FILE.upg TENSOR_NAME -o out.npy

Library:
    UpgFile(path)                         a .upg file (or .upg.index.json) : tensor table + arrays
    decode_trellis(qweight, scales_f16, rows, cols, K, L, G) -> float32 [rows, cols]  (bit-exact)
    trellis_states(qweight, cols, K, L)   -> uint32 [rows, cols] (step 1 of the docs)
    code_1mad(states)                     -> float32 (step 2 of the docs)
    unrotate_rows(WR, seed, block)        -> float32, W = (W R) R^T (float-close)
    decode_tensor(upgfile, name)          -> float32 with the logical shape
"""

import argparse
import json
import mmap
import os
import struct
import sys

import numpy as np

# safetensors dtypes -> numpy (BF16 is read as raw uint16 and widened by hand).
DTYPES = {
    "BOOL": np.dtype("u1"), "U8": np.dtype("u1"), "I8": np.dtype("i1"),
    "U16": np.dtype("<u2"), "I16": np.dtype("<i2"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2"),
    "U32": np.dtype("<u4"), "I32": np.dtype("<i4"), "F32": np.dtype("<f4"),
    "U64": np.dtype("<u8"), "I64": np.dtype("<i8"), "F64": np.dtype("<f8"),
}
MAX_HEADER = 100_000_000

MASK32 = np.uint64(0xFFFFFFFF)


class FormatError(ValueError):
    pass


# --------------------------------------------------------------------------------------------------
# Container (FORMAT.md sections 1-3)
# --------------------------------------------------------------------------------------------------

class SafetensorsFile:
    """A safetensors file: 8-byte little-endian header length N, N bytes of JSON, data section."""

    def __init__(self, path):
        self.path = str(path)
        with open(self.path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < 8:
                raise FormatError(f"{self.path}: truncated safetensors file ({size} bytes)")
            (n,) = struct.unpack("<Q", f.read(8))
            if n > MAX_HEADER or 8 + n > size:
                raise FormatError(f"{self.path}: header length {n} is larger than the file allows ({size} bytes)")
            self._mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
        self.size = size
        self.header_len = n
        try:
            hdr = json.loads(bytes(self._mm[8:8 + n]).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise FormatError(f"{self.path}: malformed JSON header: {e}") from None
        if not isinstance(hdr, dict):
            raise FormatError(f"{self.path}: malformed JSON header (not an object)")
        self.metadata = hdr.pop("__metadata__", {}) or {}
        if not isinstance(self.metadata, dict) or not all(isinstance(v, str) for v in self.metadata.values()):
            raise FormatError(f"{self.path}: __metadata__ must be an object of strings")
        self.data_start = 8 + n
        data_len = size - self.data_start
        self.entries = {}
        for name, e in hdr.items():
            try:
                dtype, shape, (b, end) = e["dtype"], list(e["shape"]), e["data_offsets"]
            except (KeyError, TypeError, ValueError):
                raise FormatError(f"{self.path}: tensor '{name}': malformed entry {e!r}") from None
            if dtype not in DTYPES:
                raise FormatError(f"{self.path}: tensor '{name}': unknown dtype {dtype!r}")
            if any((not isinstance(d, int)) or d < 0 for d in shape):
                raise FormatError(f"{self.path}: tensor '{name}': negative or non-integer dimension in {shape}")
            if not (isinstance(b, int) and isinstance(end, int) and 0 <= b <= end <= data_len):
                raise FormatError(f"{self.path}: tensor '{name}': data_offsets [{b}, {end}] out of range "
                                  f"(data section {data_len} bytes)")
            need = int(np.prod(shape, dtype=np.int64)) * DTYPES[dtype].itemsize
            if end - b != need:
                raise FormatError(f"{self.path}: tensor '{name}': span {end - b} bytes but shape {shape} "
                                  f"x {dtype} needs {need}")
            self.entries[name] = (dtype, shape, b, end)
        spans = sorted((b, end, name) for name, (_, _, b, end) in self.entries.items() if end > b)
        for (b0, e0, n0), (b1, e1, n1) in zip(spans, spans[1:]):
            if b1 < e0:
                raise FormatError(f"{self.path}: arrays '{n0}' and '{n1}' overlap")

    def array(self, name):
        """The stored array as numpy (a copy, native byte order). BF16 comes back as raw uint16."""
        if name not in self.entries:
            raise FormatError(f"{self.path}: no array '{name}'")
        dtype, shape, b, end = self.entries[name]
        dt = DTYPES[dtype]
        a = np.frombuffer(self._mm, dtype=dt, count=(end - b) // dt.itemsize, offset=self.data_start + b)
        return a.astype(dt.newbyteorder("="), copy=True).reshape(shape)

    def dtype(self, name):
        return self.entries[name][0]

    def tensor_f32(self, name):
        """A dense array widened to float32 (BF16/F16/F32)."""
        a = self.array(name)
        if self.dtype(name) == "BF16":
            return (a.astype(np.uint32) << 16).view(np.float32)
        return a.astype(np.float32)


class UpgFile:
    """A UPG model: one .upg file or a sharded .upg.index.json. `tensors` = the `upg.tensors` table."""

    def __init__(self, path):
        path = str(path)
        if os.path.isdir(path):
            idx = [p for p in os.listdir(path) if p.endswith(".upg.index.json")]
            upgs = [p for p in os.listdir(path) if p.endswith(".upg")]
            if len(idx) == 1:
                path = os.path.join(path, idx[0])
            elif len(upgs) == 1:
                path = os.path.join(path, upgs[0])
            else:
                raise FormatError(f"{path}: directory holds no single .upg.index.json or .upg file")
        elif not os.path.exists(path) and os.path.exists(path + ".index.json"):
            path = path + ".index.json"
        self.path = path
        self.tensors, self._where, self._files = {}, {}, {}
        if path.endswith(".index.json"):
            with open(path, "rb") as f:
                index = json.load(f)
            meta = index.get("metadata", {})
            self._check_meta(meta, path, need_table=False)
            base = os.path.dirname(path)
            for shard in sorted(set(index["weight_map"].values())):
                if "/" in shard or ".." in shard:
                    raise FormatError(f"{path}: weight_map names a shard outside the directory: {shard!r}")
                self._add(SafetensorsFile(os.path.join(base, shard)))
            for t, shard in index["weight_map"].items():
                if t not in self.tensors or self._where[t].path != os.path.join(base, shard):
                    raise FormatError(f"{path}: tensor '{t}' is not in shard {shard}")
        else:
            self._add(SafetensorsFile(path))

    @staticmethod
    def _check_meta(meta, path, need_table=True):
        if meta.get("format") != "upg":
            raise FormatError(f"{path}: not a UPG file: metadata 'format' is {json.dumps(meta.get('format'))}")
        v = meta.get("format_version")
        if not isinstance(v, str) or not v.partition(".")[0].isdigit() or not v.partition(".")[2].isdigit():
            raise FormatError(f"{path}: missing or malformed UPG format version {v!r}")
        if v.partition(".")[0] != "2":
            raise FormatError(f"{path}: UPG format version {v} is not supported (this reader reads 2.x)")
        if need_table and "upg.tensors" not in meta:
            raise FormatError(f"{path}: metadata has no 'upg.tensors'")

    def _add(self, sf):
        self._check_meta(sf.metadata, sf.path)
        table = json.loads(sf.metadata["upg.tensors"])
        if not isinstance(table, dict):
            raise FormatError(f"{sf.path}: 'upg.tensors' is not a JSON object")
        for name, t in table.items():
            for field in ("shape", "dtype", "codec", "params", "arrays"):
                if field not in t:
                    raise FormatError(f"{sf.path}: tensor '{name}': missing field '{field}'")
            for role, arr in t["arrays"].items():
                if arr not in sf.entries or arr.startswith("__pad__."):
                    raise FormatError(f"{sf.path}: tensor '{name}': array '{role}' refers to '{arr}', "
                                      f"which is not in the file")
            if name in self.tensors:
                raise FormatError(f"{sf.path}: tensor '{name}' appears twice")
            self.tensors[name] = t
            self._where[name] = sf

    def array(self, tensor, role):
        t = self.tensors[tensor]
        if role not in t["arrays"]:
            raise FormatError(f"tensor '{tensor}' (codec {t['codec']}): missing array '{role}'")
        sf = self._where[tensor]
        return sf.array(t["arrays"][role]), sf.dtype(t["arrays"][role])


# --------------------------------------------------------------------------------------------------
# trellis (CODECS.md, "trellis (bitshift trellis, QTIP-style)")
# --------------------------------------------------------------------------------------------------

def row_bytes(cols, K, L):
    """RB = ceil((L + (cols - 1) * K) / 8)."""
    return (L + (cols - 1) * K + 7) // 8


def check_params(cols, K, L, G):
    if not 1 <= K <= 5:
        raise FormatError(f"trellis: bits K = {K} not in 1..5")
    if not K + 1 <= L <= 16:
        raise FormatError(f"trellis: state_bits L = {L} not in K+1 .. 16")
    if G <= 0 or G % 8:
        raise FormatError(f"trellis: group G = {G} is not a positive multiple of 8")
    if cols < 1:
        raise FormatError(f"trellis: cols = {cols} < 1")


def trellis_states(qweight, cols, K, L):
    """Step 1: state s(r, j) = stream bits [jK, jK+L) of row r, MSB first; stream bit b is
    bit 7 - (b mod 8) of byte b / 8. Returns uint32 [rows, cols]."""
    q = np.asarray(qweight, dtype=np.uint8)
    rows = q.shape[0]
    # L <= 16 and a bit offset within a byte <= 7, so a state lies inside 3 bytes; read 4 big-endian
    # bytes from its first byte (3 zero bytes of padding keep the last reads in range).
    qp = np.concatenate([q, np.zeros((rows, 3), np.uint8)], axis=1).astype(np.uint64)
    off = np.arange(cols, dtype=np.int64) * K
    byte, bit = off >> 3, (off & 7).astype(np.uint64)
    word = (qp[:, byte] << np.uint64(24)) | (qp[:, byte + 1] << np.uint64(16)) | \
           (qp[:, byte + 2] << np.uint64(8)) | qp[:, byte + 3]
    s = (word >> (np.uint64(32 - L) - bit)) & np.uint64((1 << L) - 1)
    return s.astype(np.uint32)


def code_1mad(states):
    """Step 2: x = (34038481 s + 76625530) mod 2^32; code = (sum of x's 4 bytes - 510) / 128 (exact in f32)."""
    s = np.asarray(states).astype(np.uint64)
    x = (np.uint64(34038481) * s + np.uint64(76625530)) & MASK32
    ssum = (x & np.uint64(255)) + ((x >> np.uint64(8)) & np.uint64(255)) + \
           ((x >> np.uint64(16)) & np.uint64(255)) + (x >> np.uint64(24))
    return (ssum.astype(np.int32) - 510).astype(np.float32) / np.float32(128)


def decode_trellis(qweight, scales_f16, rows, cols, K, L, G):
    """The stored matrix (before any rotation is undone), float32 [rows, cols], bit-exact:
    W[r][j] = f32(scales[r][j / G]) * code(s(r, j)) as one fp32 multiply."""
    check_params(cols, K, L, G)
    RB, ng = row_bytes(cols, K, L), -(-cols // G)
    q = np.asarray(qweight)
    sc = np.asarray(scales_f16)
    if q.dtype != np.uint8 or q.shape != (rows, RB):
        raise FormatError(f"trellis: array 'qweight' is {q.dtype} {list(q.shape)}, needs U8 [{rows}, {RB}]")
    if sc.dtype != np.float16 or sc.shape != (rows, ng):
        raise FormatError(f"trellis: array 'scales' is {sc.dtype} {list(sc.shape)}, needs F16 [{rows}, {ng}]")
    if not np.isfinite(sc).all():
        raise FormatError("trellis: array 'scales' has a non-finite value")
    code = code_1mad(trellis_states(q, cols, K, L))
    scale = sc.astype(np.float32)[:, np.arange(cols) // G]
    return (scale * code).astype(np.float32)  # float32 * float32: one IEEE multiply, round to nearest


def padding_bits_zero(qweight, cols, K, L):
    """The docs: bits past L + (cols - 1) K are 0. True when they are."""
    used = L + (cols - 1) * K
    q = np.asarray(qweight, np.uint8)
    if used % 8 == 0:
        return True
    return not (q[:, used // 8] & np.uint8((1 << (8 - used % 8)) - 1)).any()


# --------------------------------------------------------------------------------------------------
# rotate (CODECS.md, "Shared options: rotation and dense-and-sparse")
# --------------------------------------------------------------------------------------------------

def splitmix_signs(seed, n):
    """s_j = -1 if the top bit of splitmix64 output number j+1 for state `seed` is set, else +1."""
    with np.errstate(over="ignore"):
        z = np.uint64(seed % (1 << 64)) + (np.arange(1, n + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15))
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return np.where((z >> np.uint64(63)) != 0, -1.0, 1.0)


def fwht_blocks(a, block):
    """Orthonormal Walsh-Hadamard transform (natural / Sylvester order, H_ij = (-1)^popcount(i&j)/sqrt(B))
    of each block of `block` consecutive columns of each row; float64."""
    a = np.array(a, dtype=np.float64)
    rows, cols = a.shape
    v = a.reshape(rows, cols // block, block)
    h = 1
    while h < block:
        v = v.reshape(rows, cols // block, block // (2 * h), 2, h)
        x, y = v[:, :, :, 0, :], v[:, :, :, 1, :]
        v = np.stack([x + y, x - y], axis=3)
        h *= 2
    return v.reshape(rows, cols) / np.sqrt(block)


def default_block(cols):
    b = 1
    while b * 2 <= 4096 and cols % (b * 2) == 0:
        b *= 2
    return b


def unrotate_rows(wr, seed, block):
    """W = (W R) R^T with x R = FWHT_B(s . x), i.e. R = D H (D = diag(s), H block-diagonal, symmetric):
    R^T = H D, so each row goes through the block FWHT and is then multiplied by s."""
    wr = np.asarray(wr)
    cols = wr.shape[1]
    if block < 1 or block & (block - 1) or cols % block:
        raise FormatError(f"rotate: block {block} is not a power of two dividing cols = {cols}")
    return (fwht_blocks(wr, block) * splitmix_signs(seed, cols)[None, :]).astype(np.float32)


def rotation_of(params, cols):
    """(seed, block) from params["rotate"], or None."""
    r = params.get("rotate")
    if r is None or r is False:
        return None
    if r is True:  # not written by the converter ("stored params always name seed and block")
        return 0, default_block(cols)
    return int(r.get("seed", 0)), int(r.get("block", default_block(cols)))


# --------------------------------------------------------------------------------------------------

def decode_tensor(upg, name, unrotate=True):
    """A trellis tensor of a UpgFile decoded to float32 with its logical shape."""
    if name not in upg.tensors:
        raise KeyError(f"{upg.path}: no tensor '{name}'")
    t = upg.tensors[name]
    if t["codec"] != "trellis":
        raise FormatError(f"tensor '{name}': codec is {t['codec']!r}, not 'trellis'")
    p = t["params"]
    if p.get("outliers"):
        raise NotImplementedError(f"tensor '{name}': 'outliers' (dense-and-sparse) is not implemented here")
    shape = t["shape"]
    if len(shape) == 2:
        rows, cols = shape
    elif len(shape) == 1:
        rows, cols = 1, shape[0]
    else:
        raise FormatError(f"tensor '{name}': codec trellis needs rank 1 or 2, shape is {shape}")
    K, L, G = int(p.get("bits", 3)), int(p.get("state_bits", 12)), int(p.get("group", 64))
    q, qd = upg.array(name, "qweight")
    s, sd = upg.array(name, "scales")
    if qd != "U8" or sd != "F16":
        raise FormatError(f"tensor '{name}': qweight/scales have dtypes {qd}/{sd}, need U8/F16")
    # rank 1 is "opened as 1 x n"; accept its arrays as [RB] / [ng] or [1, RB] / [1, ng]
    if len(shape) == 1:
        q, s = q.reshape(1, -1), s.reshape(1, -1)
    w = decode_trellis(q, s, rows, cols, K, L, G)
    rot = rotation_of(p, cols)
    if unrotate and rot is not None:
        w = unrotate_rows(w, *rot)
    return w.reshape(shape)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file", help=".upg file (or .upg.index.json)")
    ap.add_argument("tensor", help="logical tensor name, e.g. model.layers.0.mlp.down_proj.weight")
    ap.add_argument("-o", "--output", required=True, help="output .npy (float32)")
    ap.add_argument("--stored", action="store_true", help="keep the rotated basis (W R): do not undo 'rotate'")
    a = ap.parse_args(argv)
    try:
        w = decode_tensor(UpgFile(a.file), a.tensor, unrotate=not a.stored)
    except (FormatError, KeyError, NotImplementedError, OSError) as e:
        print(f"trellis_decode: {e}", file=sys.stderr)
        return 1
    np.save(a.output, w)
    print(f"{a.tensor}: {list(w.shape)} float32 -> {a.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
