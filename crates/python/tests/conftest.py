"""Shared fixtures. The extension is built and put on PYTHONPATH by scripts/python-test.sh; the
CLI binary of the same build is $M2IB_CLI. Both run with the same intra-op thread count, so maps
can be compared bit for bit."""

import json
import os
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")

REPO = Path(__file__).resolve().parents[3]
SCENES = REPO / "crates" / "python" / "tests" / "data"


@pytest.fixture(scope="session")
def m2ib():
    import m2ib

    return m2ib


@pytest.fixture(scope="session")
def model(m2ib):
    return m2ib.load("tiny-shapes")


@pytest.fixture(scope="session")
def scenes():
    return sorted(SCENES.glob("*.png"))


def cli(*args, check=True):
    """The m2ib command of the same build; returns the completed process."""
    exe = os.environ.get("M2IB_CLI")
    if not exe:
        pytest.skip("M2IB_CLI not set (run through scripts/python-test.sh)")
    return subprocess.run([exe, *map(str, args)], capture_output=True, text=True, check=check, cwd=REPO)


def read_safetensors(path):
    """The arrays of a safetensors file (the format is a JSON header and raw little-endian data)."""
    raw = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    body = raw[8 + n :]
    kinds = {"F32": np.float32, "F64": np.float64, "I64": np.int64}
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        a, b = meta["data_offsets"]
        out[name] = np.frombuffer(body[a:b], dtype=kinds[meta["dtype"]]).reshape(meta["shape"])
    return out


def write_png(path, rgb):
    """An HxWx3 uint8 array as an RGB PNG (no PIL needed)."""
    import zlib

    h, w, _ = rgb.shape
    rows = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))

    def chunk(kind, data):
        c = struct.pack(">I", len(data)) + kind + data
        return c + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    Path(path).write_bytes(png)
