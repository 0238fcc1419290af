#!/usr/bin/env python3
"""Test inputs for the legacy PyTorch checkpoint reader (src/format/torch_checkpoint.h), made without
torch: Python's own pickle module and a zip writer emulating torch.save's layout byte for byte.

torch.save (>= 1.6) writes a zip archive "<name>/data.pkl", "<name>/byteorder", "<name>/data/<key>",
"<name>/version", every entry STORED and its data aligned to 64 bytes (the local header's extra field
is padded, id 'FB'). data.pkl is a protocol-2 pickle in which each tensor is

    torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, OrderedDict())

and each storage is a persistent id ('storage', torch.FloatStorage, '<key>', 'cpu', numel). Here
stand-in objects whose __module__/__qualname__ are those names, registered in a fake `torch` module,
make pickle emit exactly those GLOBAL opcodes (pickle checks that the name resolves to the object).

Usage:
  make_torch_fixtures.py fixtures OUT_DIR MARKER
      OUT_DIR/good/<case>/   config.json + pytorch_model.bin (or shards + index)
      OUT_DIR/good/<case>.expected.safetensors  every tensor row-major, for bit-exact comparison
      OUT_DIR/bad/<case>.bin malicious or damaged files; the ones that would run code try to create
                             MARKER (the test checks it never appears)
  make_torch_fixtures.py fuzz-seeds OUT_DIR
      seed inputs for tests/fuzz/fuzz_torch_pickle.cpp (tests/fuzz/corpus_torch_pickle/)
  make_torch_fixtures.py from-safetensors SRC_DIR DST_DIR [--shards N] [--shared-storage] [--transpose]
      rewrites a Hugging Face safetensors directory as pytorch_model.bin (or N shards + index), copying
      config.json and tokenizer files. --shared-storage packs all tensors of one dtype in a file into
      one storage (views at offsets); --transpose stores 2-D tensors transposed (non-contiguous views).
"""
import builtins
import collections
import io
import json
import os
import pickle
import struct
import sys
import types
import zipfile

# ---------------------------------------------------------------------------------------------
# Stand-ins for the torch names a state dict pickle references.

torch_mod = types.ModuleType("torch")
torch_utils = types.ModuleType("torch._utils")
torch_mod._utils = torch_utils
sys.modules["torch"] = torch_mod
sys.modules["torch._utils"] = torch_utils


def _make_storage_type(name):
    cls = type(name, (), {})
    cls.__module__ = "torch"
    cls.__qualname__ = name
    setattr(torch_mod, name, cls)
    return cls


# safetensors dtype -> (storage type, element size)
STORAGE = {
    "F32": (_make_storage_type("FloatStorage"), 4),
    "F16": (_make_storage_type("HalfStorage"), 2),
    "BF16": (_make_storage_type("BFloat16Storage"), 2),
    "F64": (_make_storage_type("DoubleStorage"), 8),
    "I64": (_make_storage_type("LongStorage"), 8),
    "I32": (_make_storage_type("IntStorage"), 4),
    "I16": (_make_storage_type("ShortStorage"), 2),
    "I8": (_make_storage_type("CharStorage"), 1),
    "U8": (_make_storage_type("ByteStorage"), 1),
    "BOOL": (_make_storage_type("BoolStorage"), 1),
}


def _fake_function(module, mod_name, name):
    def f(*a):
        raise RuntimeError("stand-in, never called")

    f.__module__ = mod_name
    f.__qualname__ = name
    f.__name__ = name
    setattr(module, name, f)
    return f


rebuild_tensor_v2 = _fake_function(torch_utils, "torch._utils", "_rebuild_tensor_v2")
rebuild_parameter = _fake_function(torch_utils, "torch._utils", "_rebuild_parameter")


class Storage:
    """Raw bytes of one storage; `dtype` is a safetensors dtype name."""

    def __init__(self, dtype, data):
        self.dtype, self.data = dtype, bytes(data)
        assert len(self.data) % STORAGE[dtype][1] == 0
        self.numel = len(self.data) // STORAGE[dtype][1]


class Tensor:
    def __init__(self, storage, offset, shape, stride=None):
        if stride is None:  # row-major
            stride, s = [], 1
            for d in reversed(shape):
                stride.insert(0, s)
                s *= d
        self.storage, self.offset, self.shape, self.stride = storage, offset, tuple(shape), tuple(stride)

    def __reduce_ex__(self, proto):
        return (rebuild_tensor_v2, (self.storage, self.offset, self.shape, self.stride, False, collections.OrderedDict()))

    def row_major(self):
        """The tensor's elements in row-major order (what a reader must produce)."""
        item = STORAGE[self.storage.dtype][1]
        out = bytearray()
        n = 1
        for d in self.shape:
            n *= d
        for flat in range(n):
            idx, rem = [], flat
            for d in reversed(self.shape):
                idx.insert(0, rem % d)
                rem //= d
            off = self.offset + sum(i * s for i, s in zip(idx, self.stride))
            out += self.storage.data[off * item:(off + 1) * item]
        return bytes(out)


class Parameter:
    def __init__(self, t):
        self.t = t

    def __reduce_ex__(self, proto):
        return (rebuild_parameter, (self.t, False, collections.OrderedDict()))


def state_dict_pickle(sd, protocol=2, metadata=True):
    """Pickles sd (name -> Tensor/Parameter) like torch.save; returns (data.pkl bytes, {key: Storage})."""
    keys = {}

    def persistent_id(obj):
        if isinstance(obj, Storage):
            key = keys.setdefault(id(obj), (str(len(keys)), obj))[0]
            return ("storage", STORAGE[obj.dtype][0], key, "cpu", obj.numel)
        return None

    od = collections.OrderedDict(sd)
    if metadata:  # what Module.state_dict() attaches
        od._metadata = collections.OrderedDict([("", {"version": 1}), ("layer", {"version": 2})])
    buf = io.BytesIO()
    p = pickle.Pickler(buf, protocol=protocol)
    p.persistent_id = persistent_id
    p.dump(od)
    return buf.getvalue(), {k: s for k, s in keys.values()}


# ---------------------------------------------------------------------------------------------
# Zip writer with torch's layout: stored entries, data aligned to 64 bytes.

def zip_bytes(entries, align=64, zip64=False, overlap=False):
    """entries: [(name, bytes)]. zip64 writes zip64 EOCD records and central zip64 extra fields;
    overlap makes the first entry's recorded size cover the next entry's header."""
    out = bytearray()
    central = []
    for name, data in entries:
        nb = name.encode()
        offset = len(out)
        extra = b""
        if align:
            pad = (-(offset + 30 + len(nb) + 4)) % align
            extra = struct.pack("<HH", 0x4246, pad) + b"Z" * pad  # "FB" padding, like torch
        crc = zipfile.crc32(data) & 0xFFFFFFFF
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0x21, crc, len(data), len(data), len(nb),
                           len(extra)) + nb + extra
        out += data
        central.append((nb, crc, len(data), offset))
    cd_offset = len(out)
    for i, (nb, crc, size, offset) in enumerate(central):
        if overlap and i == 0:
            size += 40
        if zip64:
            extra = struct.pack("<HHQQQ", 1, 24, size, size, offset)
            out += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 0, 0, 0, 0x21, crc, 0xFFFFFFFF, 0xFFFFFFFF,
                               len(nb), len(extra), 0, 0, 0, 0, 0xFFFFFFFF) + nb + extra
        else:
            out += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 0, 0, 0x21, crc, size, size, len(nb), 0, 0,
                               0, 0, 0, offset) + nb
    cd_size = len(out) - cd_offset
    n = len(central)
    if zip64:
        z64 = len(out)
        out += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, n, n, cd_size, cd_offset)
        out += struct.pack("<IIQI", 0x07064B50, 0, z64, 1)
        out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    else:
        out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, cd_size, cd_offset, 0)
    return bytes(out)


def torch_archive(pkl, storages, prefix="archive", byteorder=b"little", **kw):
    entries = [(f"{prefix}/data.pkl", pkl), (f"{prefix}/byteorder", byteorder)]
    for key in sorted(storages, key=lambda k: (len(k), k)):
        entries.append((f"{prefix}/data/{key}", storages[key].data))
    entries.append((f"{prefix}/version", b"3\n"))
    return zip_bytes(entries, **kw)


def save(sd, path, protocol=2, **kw):
    pkl, storages = state_dict_pickle(sd, protocol)
    data = torch_archive(pkl, storages, prefix=os.path.splitext(os.path.basename(path))[0], **kw)
    with open(path, "wb") as f:
        f.write(data)
    # Our writer must produce archives Python's zipfile accepts too.
    with zipfile.ZipFile(path) as z:
        assert z.testzip() is None


# ---------------------------------------------------------------------------------------------
# Minimal safetensors reader/writer.

def write_safetensors(path, tensors):
    """tensors: [(name, dtype, shape, bytes)]"""
    header, off = {}, 0
    for name, dt, shape, data in tensors:
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(data)]}
        off += len(data)
    h = json.dumps(header).encode()
    h += b" " * ((-(8 + len(h))) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for _, _, _, data in tensors:
            f.write(data)


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    header.pop("__metadata__", None)
    base = 8 + n
    return {k: (v["dtype"], v["shape"], raw[base + v["data_offsets"][0]:base + v["data_offsets"][1]])
            for k, v in header.items()}


# ---------------------------------------------------------------------------------------------
# Fixtures

def f32(vals):
    return struct.pack(f"<{len(vals)}f", *vals)


def f16(vals):
    return struct.pack(f"<{len(vals)}e", *vals)


def bf16(vals):  # values exactly representable in bf16: the upper half of the f32 bits
    return b"".join(struct.pack("<f", v)[2:] for v in vals)


CONFIG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama"}


def write_case(out, name, files, expected, config=CONFIG):
    d = os.path.join(out, "good", name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(config, f)
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump({"model_max_length": 64}, f)
    for fname, sd, kw in files:
        save(sd, os.path.join(d, fname), **kw)
    write_safetensors(os.path.join(out, "good", name + ".expected.safetensors"),
                      [(n, t.storage.dtype, t.shape, t.row_major()) for n, t in expected.items()])
    return d


def basic_state_dict():
    shared = Storage("F32", f32([i * 0.25 - 2 for i in range(16)]))
    trans = Storage("F32", f32([1, 2, 3, 4, 5, 6]))
    a = Tensor(shared, 0, [4, 2])
    tensors = collections.OrderedDict([
        ("model.embed.weight", Tensor(Storage("F32", f32([i * 0.5 - 1 for i in range(12)])), 0, [3, 4])),
        ("model.norm.weight", Tensor(Storage("F16", f16([0.5, 1, 1.5, -2, 65504])), 0, [5])),
        ("model.layer.bf16", Tensor(Storage("BF16", bf16([1, -2, 0.5, 3, 0.25, -0.125])), 0, [2, 3])),
        ("tied.a", a),
        ("tied.b", Tensor(shared, 8, [2, 4])),  # a view at an offset into the same storage
        ("tied.c", a),  # the same tensor object under a second name (pickled as a memo reference)
        ("transposed", Tensor(trans, 0, [3, 2], [1, 3])),  # non-contiguous view
        ("slice", Tensor(trans, 1, [2, 2], [3, 1])),  # non-contiguous: rows of 2 out of 3 columns
        ("ids", Tensor(Storage("I64", struct.pack("<3q", 1, -2, 1 << 40)), 0, [3])),
        ("scalar", Tensor(Storage("F32", f32([7.5])), 0, [])),
        ("empty", Tensor(Storage("F32", b""), 0, [0, 4])),
    ])
    sd = collections.OrderedDict(tensors)
    sd["param"] = Parameter(Tensor(Storage("F16", f16([1, 2, 3, 4])), 0, [2, 2]))
    expected = collections.OrderedDict((k, v) for k, v in tensors.items())
    expected["param"] = sd["param"].t
    return sd, expected


def make_fixtures(out, marker):
    sd, expected = basic_state_dict()
    write_case(out, "basic", [("pytorch_model.bin", sd, {})], expected)
    write_case(out, "zip64", [("pytorch_model.bin", sd, {"zip64": True})], expected)
    write_case(out, "proto4", [("pytorch_model.bin", sd, {"protocol": 4})], expected)
    write_case(out, "unaligned", [("pytorch_model.bin", sd, {"align": 0})], expected)

    # Python's own zipfile writer (other header fields, no alignment), archive prefix "pytorch_model".
    d = write_case(out, "pyzipfile", [], expected)
    pkl, storages = state_dict_pickle(sd)
    with zipfile.ZipFile(os.path.join(d, "pytorch_model.bin"), "w", zipfile.ZIP_STORED) as z:
        z.writestr("pytorch_model/data.pkl", pkl)
        for k, s in storages.items():
            z.writestr(f"pytorch_model/data/{k}", s.data)
        z.writestr("pytorch_model/version", b"3\n")

    # Sharded: two files and an index, like save_pretrained(safe_serialization=False, max_shard_size=...).
    names = list(sd)
    half = len(names) // 2
    s1 = collections.OrderedDict((n, sd[n]) for n in names[:half])
    s2 = collections.OrderedDict((n, sd[n]) for n in names[half:])
    f1, f2 = "pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin"
    d = write_case(out, "sharded", [(f1, s1, {}), (f2, s2, {})], expected)
    with open(os.path.join(d, "pytorch_model.bin.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": 0},
                   "weight_map": {**{n: f1 for n in s1}, **{n: f2 for n in s2}}}, f, indent=2)

    # Malicious and damaged files.
    bad = os.path.join(out, "bad")
    os.makedirs(bad, exist_ok=True)

    def write_bad(name, data):
        with open(os.path.join(bad, name + ".bin"), "wb") as f:
            f.write(data)

    def pickled(obj, protocol=2):
        return pickle.dumps(obj, protocol=protocol)

    class RunsShell:  # os.system via __reduce__: pickle writes GLOBAL 'posix system' + REDUCE
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    class RunsEval:
        def __reduce__(self):
            return (builtins.eval, (f"open({marker!r}, 'w').close()",))

    class RunsExec:
        def __reduce__(self):
            return (builtins.exec, (f"open({marker!r}, 'w').close()",))

    good_t = Tensor(Storage("F32", f32([1, 2])), 0, [2])
    # A state dict whose value is a shell command (the classic pytorch_model.bin attack).
    write_bad("os_system", torch_archive(pickled({"w": RunsShell()}), {}))
    write_bad("builtins_eval", torch_archive(pickled(collections.OrderedDict([("x", RunsEval())])), {}))
    write_bad("exec_proto4", torch_archive(pickled({"x": RunsExec()}, protocol=4), {}))
    # An allowed-looking callable that is not on the list, next to a real tensor.
    pkl, st = state_dict_pickle({"w": good_t})
    write_bad("subprocess", torch_archive(pkl.replace(b"collections\nOrderedDict", b"subprocess\nPopen"), st))
    # A BINUNICODE claiming 2 GiB.
    write_bad("huge_string", torch_archive(b"\x80\x02}q\x00X\xff\xff\xff\x7fabc", {}))
    # 100000 nested MARKs; 100000 nested one-element tuples.
    write_bad("deep_marks", torch_archive(b"\x80\x02" + b"(" * 100000 + b".", {}))
    write_bad("deep_tuples", torch_archive(b"\x80\x02N" + b"\x85" * 100000 + b".", {}))
    # Truncated: the basic archive cut in the middle.
    pkl, st = state_dict_pickle(sd)
    whole = torch_archive(pkl, st)
    write_bad("truncated", whole[: len(whole) // 2])
    # A storage the pickle names but the archive lacks.
    pkl, st = state_dict_pickle({"w": good_t})
    write_bad("missing_storage", torch_archive(pkl, {}))
    # A view reaching past its storage (offset 1, 2 elements, storage of 2).
    pkl, st = state_dict_pickle({"w": Tensor(Storage("F32", f32([1, 2])), 1, [2])})
    write_bad("view_out_of_bounds", torch_archive(pkl, st))
    # A storage entry shorter than the pickle declares.
    s = Storage("F32", f32([1, 2, 3, 4]))
    pkl, st = state_dict_pickle({"w": Tensor(s, 0, [4])})
    write_bad("storage_size", torch_archive(pkl, {"0": Storage("F32", f32([1, 2]))}))
    # Compressed data.pkl.
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", pkl)
    write_bad("deflated", buf.getvalue())
    # Overlapping entries (the first entry's recorded size covers the second's header).
    write_bad("overlap", torch_archive(pkl, st, overlap=True))
    # A damaged data.pkl (CRC mismatch): one byte of the pickle changed after the CRC was computed.
    arch = bytearray(torch_archive(pkl, st))
    at = arch.find(b"storage")
    arch[at] = ord("S")
    write_bad("crc", bytes(arch))
    # A storage key trying to name another entry.
    write_bad("key_traversal", torch_archive(pkl.replace(b"X\x01\x00\x00\x000", b"X\x0b\x00\x00\x00../data.pkl"), st))
    # Big-endian storages (torch.save on a big-endian machine).
    write_bad("big_endian", torch_archive(pkl, st, byteorder=b"big"))
    # The pre-1.6 format: a bare pickle.
    write_bad("legacy", pickled({"w": 1}))


def from_safetensors(src, dst, shards=1, shared_storage=False, transpose=False):
    import glob

    os.makedirs(dst, exist_ok=True)
    tensors = {}
    for p in sorted(glob.glob(os.path.join(src, "*.safetensors"))):
        if os.path.basename(p) != "golden.safetensors":
            tensors.update(read_safetensors(p))
    names = sorted(tensors)
    groups = [names[i::shards] for i in range(shards)]
    weight_map = {}
    for gi, group in enumerate(groups):
        fname = "pytorch_model.bin" if shards == 1 else f"pytorch_model-{gi + 1:05d}-of-{shards:05d}.bin"
        sd = collections.OrderedDict()
        packed = {}  # dtype -> [bytearray, pending tensors]
        for n in group:
            dt, shape, data = tensors[n]
            item = STORAGE[dt][1]
            if transpose and len(shape) == 2 and shape[0] > 1 and shape[1] > 1:
                r, c = shape
                tdata = b"".join(data[(i * c + j) * item:(i * c + j + 1) * item] for j in range(c) for i in range(r))
                sd[n] = Tensor(Storage(dt, tdata), 0, shape, [1, r])
            elif shared_storage:
                buf, pending = packed.setdefault(dt, [bytearray(), []])
                pending.append((n, len(buf) // item, shape))
                buf += data
            else:
                sd[n] = Tensor(Storage(dt, data), 0, shape)
            weight_map[n] = fname
        for dt, (buf, pending) in packed.items():
            s = Storage(dt, buf)
            for n, off, shape in pending:
                sd[n] = Tensor(s, off, shape)
        save(sd, os.path.join(dst, fname))
    if shards > 1:
        with open(os.path.join(dst, "pytorch_model.bin.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": 0}, "weight_map": weight_map}, f, indent=2)
    for name in os.listdir(src):
        if name.endswith(".json") and not name.endswith("index.json") or name in ("tokenizer.model",):
            with open(os.path.join(src, name), "rb") as a, open(os.path.join(dst, name), "wb") as b:
                b.write(a.read())


def make_fuzz_seeds(out):
    """Seeds for tests/fuzz/fuzz_torch_pickle.cpp: byte 0 selects the reader (0: data.pkl, 1: whole
    archive), then the input; every fixture whose archive stays under the fuzzer's 4096-byte limit."""
    import hashlib
    import tempfile

    os.makedirs(out, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        make_fixtures(tmp, "/nonexistent/upg_fuzz_MARKER")  # fixed: seeds are the same on every run
        files = [os.path.join(tmp, "bad", f) for f in sorted(os.listdir(os.path.join(tmp, "bad")))]
        for case in sorted(os.listdir(os.path.join(tmp, "good"))):
            d = os.path.join(tmp, "good", case)
            if os.path.isdir(d):
                files += [os.path.join(d, f) for f in sorted(os.listdir(d)) if f.endswith(".bin")]
        for path in files:
            with open(path, "rb") as f:
                data = f.read()
            seeds = [b"\x01" + data]
            try:
                with zipfile.ZipFile(path) as z:
                    seeds += [b"\x00" + z.read(n) for n in z.namelist() if n.endswith("/data.pkl")]
            except Exception:
                pass
            for s in seeds:
                if len(s) <= 4096:
                    with open(os.path.join(out, hashlib.sha1(s).hexdigest()), "wb") as f:
                        f.write(s)


def main(argv):
    if len(argv) == 3 and argv[0] == "fixtures":
        make_fixtures(argv[1], argv[2])
    elif len(argv) == 2 and argv[0] == "fuzz-seeds":
        make_fuzz_seeds(argv[1])
    elif len(argv) >= 3 and argv[0] == "from-safetensors":
        shards = int(argv[argv.index("--shards") + 1]) if "--shards" in argv else 1
        from_safetensors(argv[1], argv[2], shards, "--shared-storage" in argv, "--transpose" in argv)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
