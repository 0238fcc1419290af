"""The trellis codec's documentation is complete: tools/reference/trellis_decode.py, a numpy decoder
written from docs/CODECS.md and docs/FORMAT.md alone, decodes what `upg convert --codec trellis` writes
exactly as `upg decompress` does (bit-exact without rotation, float-close with rotate=true).

Uses the upg command line at $UPG_BIN (default build/upg of this repository); skips when it is absent.
Needs numpy only (Debian python3-numpy)."""

import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "reference"))
import trellis_decode as td  # noqa: E402

MODEL = ROOT / "tests" / "golden" / "llama2_linear_f16"  # 459k parameters: converts in seconds

# name -> (--codec, expected params). passes=1 at L = 16 halves the slowest conversion (~10 s on 2 cores).
CONFIGS = {
    "k3g64": ("trellis:bits=3,group=64", dict(bits=3, group=64, state_bits=12)),
    "k2g32l10rot": ("trellis:bits=2,group=32,state_bits=10,rotate=true", dict(bits=2, group=32, state_bits=10)),
    "k4l16": ("trellis:bits=4,state_bits=16,passes=1", dict(bits=4, group=64, state_bits=16)),
    "k5g512rot": ("trellis:bits=5,group=512,rotate=true,passes=1", dict(bits=5, group=512, state_bits=12)),
}


def _upg_path():
    return Path(os.environ.get("UPG_BIN") or ROOT / "build" / "upg")


@pytest.fixture(scope="session")
def upg_cmd():
    # The binary may be being rebuilt right now: wait a little for it to reappear.
    b = _upg_path()
    for _ in range(10):
        if b.exists() and os.access(b, os.X_OK):
            return str(b)
        time.sleep(2)
    pytest.skip(f"no upg command line at {b} (build it, or set UPG_BIN)")


def _popen(cmd):
    """Start a command, retrying while the binary is missing or being written (ETXTBSY)."""
    for attempt in range(10):
        try:
            return subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True)
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.ETXTBSY) or attempt == 9:
                raise
            time.sleep(2)


def _wait(cmd, p):
    out, err = p.communicate(timeout=300)
    if p.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} exited {p.returncode}\nstdout:\n{out[-3000:]}\n"
                             f"stderr:\n{err[-3000:]}")


def _run_all(cmds):
    """Run commands concurrently (the machine may have 2 cores; the conversions are single-threaded)."""
    procs = [(c, _popen(c)) for c in cmds]
    for c, p in procs:
        _wait(c, p)


@pytest.fixture(scope="session")
def converted(upg_cmd, tmp_path_factory):
    """name -> (upg file, f32 decompressed safetensors file, bf16 decompressed safetensors file or None)."""
    d = tmp_path_factory.mktemp("trellis_ref")
    _run_all([[upg_cmd, "convert", MODEL, "-o", d / f"{n}.upg", "--codec", spec] for n, (spec, _) in CONFIGS.items()])
    cmds = [[upg_cmd, "decompress", d / f"{n}.upg", "-o", d / f"{n}_f32", "--dtype", "f32"] for n in CONFIGS]
    cmds.append([upg_cmd, "decompress", d / "k3g64.upg", "-o", d / "k3g64_bf16"])  # default dtype: bf16
    _run_all(cmds)

    def st(dirname):
        files = sorted((d / dirname).glob("*.safetensors"))
        assert len(files) == 1, f"{dirname}: expected one model.safetensors, found {files}"
        return td.SafetensorsFile(files[0])

    return {n: (td.UpgFile(d / f"{n}.upg"), st(f"{n}_f32"), st("k3g64_bf16") if n == "k3g64" else None)
            for n in CONFIGS}


def _trellis_tensors(upg):
    names = [n for n, t in upg.tensors.items() if t["codec"] == "trellis"]
    assert len(names) >= 14, f"expected every linear weight stored with trellis, got {names}"
    return names


def _bf16_rne(a):
    """float32 -> bf16 bits, round to nearest even (finite inputs)."""
    u = np.ascontiguousarray(a, np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_reference_decoder_matches_upg_decompress(converted, name):
    upg, dec, _ = converted[name]
    spec, want = CONFIGS[name]
    rotated = "rotate=true" in spec
    for t in _trellis_tensors(upg):
        p = upg.tensors[t]["params"]
        for k, v in want.items():
            assert p[k] == v, f"{t}: params {p} (wanted {k}={v})"
        assert ("rotate" in p) == rotated, f"{t}: params {p}"
        rows, cols = upg.tensors[t]["shape"]
        q, _ = upg.array(t, "qweight")
        assert td.padding_bits_zero(q, cols, p["bits"], p["state_bits"]), f"{t}: nonzero bits past the stream"

        mine = td.decode_tensor(upg, t)
        assert dec.dtype(t) == "F32"
        ref = dec.tensor_f32(t)
        assert mine.shape == ref.shape == (rows, cols), t
        assert np.isfinite(mine).all(), t
        if not rotated:
            bad = np.flatnonzero(mine.view(np.uint32) != ref.view(np.uint32))
            assert bad.size == 0, (f"{t}: {bad.size} of {mine.size} values differ, first at flat index {bad[0]}: "
                                   f"reference {mine.flat[bad[0]]!r}, upg {ref.flat[bad[0]]!r}")
        else:
            rot = p["rotate"]
            assert set(rot) >= {"seed", "block"}, f"{t}: stored rotate params {rot} must name seed and block"
            # the stored (rotated-basis) matrix itself is exact; undoing R is float-close
            rms = float(np.sqrt(np.mean(ref.astype(np.float64) ** 2)))
            np.testing.assert_allclose(mine, ref, rtol=1e-5, atol=1e-5 * rms, err_msg=t)
            rel = np.linalg.norm(mine.astype(np.float64) - ref) / np.linalg.norm(ref.astype(np.float64))
            assert rel < 1e-6, f"{t}: relative Frobenius difference {rel}"
            # and the rotation really was undone: decoding without it is far off
            stored = td.decode_tensor(upg, t, unrotate=False)
            assert np.linalg.norm(stored.astype(np.float64) - ref) > 0.1 * np.linalg.norm(ref.astype(np.float64))


def test_reference_decoder_matches_bf16_decompress(converted):
    upg, _, dec_bf16 = converted["k3g64"]
    for t in _trellis_tensors(upg):
        assert dec_bf16.dtype(t) == "BF16"
        got = dec_bf16.array(t)  # raw bf16 bits
        want = _bf16_rne(td.decode_tensor(upg, t))
        assert np.array_equal(got, want), f"{t}: {int((got != want).sum())} bf16 values differ"


def test_docs_worked_example():
    # CODECS.md: K = 3, L = 12, G = 64, cols = 3, bytes A5 3C 80.
    K, L, G, cols = 3, 12, 64, 3
    assert td.row_bytes(cols, K, L) == 3
    q = np.array([[0xA5, 0x3C, 0x80]], np.uint8)
    assert "".join(f"{b:08b}" for b in q[0]) == "101001010011110010000000"
    s = td.trellis_states(q, cols, K, L)
    assert s.tolist() == [[0xA53, 0x29E, 0x4F2]] == [[2643, 670, 1266]]
    # the shift-register form: s(j+1) = ((s(j) << K) | next K bits) mod 2^L
    assert ((2643 << 3) | 0b110) % 4096 == 670 and ((670 << 3) | 0b010) % 4096 == 1266
    x = (34038481 * 2643 + 76625530) % 2**32
    assert x == 0xF6D26A3D and [(x >> (8 * i)) & 255 for i in range(4)] == [61, 106, 210, 246]
    code = td.code_1mad(s)
    assert code[0, 0] == np.float32(113 / 128) == np.float32(0.8828125)
    # every code is an integer in [-510, 510] over 128
    all_codes = td.code_1mad(np.arange(1 << 16, dtype=np.uint32)) * 128
    assert all_codes.min() >= -510 and all_codes.max() <= 510 and (all_codes == np.round(all_codes)).all()
    # the weight: one fp32 multiply of the f16 scale and the code. The docs quote "f16 0.0099945068359375"
    # for a scale of 0.01, but round-to-nearest f16(0.01) is 0.01000213623046875 (0x211F);
    # 0.0099945068359375 is 0x211E, the value below. Decoding does not depend on which: use both.
    assert float(np.float16(0.01)) == 0.01000213623046875
    for sc in (np.float16(0.01), np.float16(0.0099945068359375)):
        w = td.decode_trellis(q, np.array([[sc]], np.float16), 1, cols, K, L, G)
        assert w.dtype == np.float32 and w[0, 0] == np.float32(sc) * np.float32(0.8828125)


def test_rotation_helpers_are_orthonormal():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((3, 256)).astype(np.float32)
    h = td.fwht_blocks(np.eye(256), 128)  # rows of H (block diagonal, natural order)
    assert np.allclose(h @ h.T, np.eye(256)) and np.allclose(h, h.T)
    s = td.splitmix_signs(0, 256)
    assert set(np.unique(s)) == {-1.0, 1.0}
    wr = (td.fwht_blocks(w * s, 128)).astype(np.float32)  # x R = FWHT_B(s . x) for each row
    assert np.allclose(td.unrotate_rows(wr, 0, 128), w, atol=1e-5)
    # splitmix64 output 1 for state 0 (the well-known first value 0xE220A8397B1DCDAF has its top bit set)
    assert s[0] == -1.0


def test_container_errors(tmp_path):
    bad = tmp_path / "short.upg"
    bad.write_bytes(b"\x01\x02")
    with pytest.raises(td.FormatError, match="truncated"):
        td.UpgFile(bad)
    bad.write_bytes((10**9).to_bytes(8, "little") + b"{}")
    with pytest.raises(td.FormatError, match="header length"):
        td.UpgFile(bad)
    hdr = b'{"__metadata__": {"format": "gguf"}}'
    bad.write_bytes(len(hdr).to_bytes(8, "little") + hdr)
    with pytest.raises(td.FormatError, match="not a UPG file"):
        td.UpgFile(bad)
    hdr = b'{"__metadata__": {"format": "upg", "format_version": "3.0", "upg.tensors": "{}"}}'
    bad.write_bytes(len(hdr).to_bytes(8, "little") + hdr)
    with pytest.raises(td.FormatError, match="3.0 is not supported"):
        td.UpgFile(bad)
    hdr = b'{"a": {"dtype": "F16", "shape": [4], "data_offsets": [0, 4]}}'
    bad.write_bytes(len(hdr).to_bytes(8, "little") + hdr + b"\0" * 4)
    with pytest.raises(td.FormatError, match="needs 8"):
        td.UpgFile(bad)
    with pytest.raises(td.FormatError, match="qweight"):
        td.decode_trellis(np.zeros((2, 5), np.uint8), np.zeros((2, 1), np.float16), 2, 3, 3, 12, 64)


def test_cli(converted, tmp_path):
    upg, dec, _ = converted["k3g64"]
    t = "model.layers.1.mlp.down_proj.weight"
    out = tmp_path / "w.npy"
    r = subprocess.run([sys.executable, ROOT / "tools" / "reference" / "trellis_decode.py", upg.path, t, "-o", out],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert np.array_equal(np.load(out).view(np.uint32), dec.tensor_f32(t).view(np.uint32))
    r = subprocess.run([sys.executable, ROOT / "tools" / "reference" / "trellis_decode.py", upg.path,
                        "model.norm.weight", "-o", out], capture_output=True, text=True)
    assert r.returncode == 1 and "not 'trellis'" in r.stderr
