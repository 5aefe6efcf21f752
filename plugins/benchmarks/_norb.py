"""Reader for the binary matrix files of SmallNORB (LeCun, Huang & Bottou, CVPR 2004;
https://cs.nyu.edu/~ylclab/data/norb-v1.0-small/), optionally ``.gz``.

Format (little-endian): a 4-byte magic number giving the element type, a 4-byte ``ndim``, then
``max(ndim, 3)`` 4-byte dimensions (files with fewer than 3 dimensions still store 3; the extra
ones are ignored), then the data. The header is validated against the file size, so a
truncated or corrupted file is an error, never silently wrong data.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
from mtlkit_plugins.benchmarks._files import find_data_file, read_raw

from mtlkit.errors import DataError

#: magic number -> element type (the format's documented codes)
MAGIC = {
    0x1E3D4C51: np.dtype("<f4"),  # single-precision float
    0x1E3D4C53: np.dtype("<f8"),  # double-precision float
    0x1E3D4C54: np.dtype("<i4"),  # integer
    0x1E3D4C55: np.dtype("u1"),   # byte
    0x1E3D4C56: np.dtype("<i2"),  # short
}


def find_file(root: Path, name: str, source: str) -> Path:
    return find_data_file(root, name, "SmallNORB files", source)


def read_matrix(path: Path) -> np.ndarray:
    raw = read_raw(path)
    if len(raw) < 8:
        raise DataError(f"{path} is truncated (no header)")
    magic, ndim = struct.unpack("<iI", raw[:8])
    dtype = MAGIC.get(magic & 0xFFFFFFFF)
    if dtype is None:
        raise DataError(f"{path} is not a SmallNORB matrix file (bad magic number "
                        f"0x{magic & 0xFFFFFFFF:08X})")
    if not 1 <= ndim <= 16:
        raise DataError(f"{path}: implausible number of dimensions {ndim} (corrupted header)")
    stored = max(ndim, 3)
    header = 8 + 4 * stored
    if len(raw) < header:
        raise DataError(f"{path} is truncated (header incomplete)")
    dims = struct.unpack(f"<{stored}i", raw[8:header])[:ndim]
    if any(d < 0 for d in dims):
        raise DataError(f"{path}: negative dimension in header {dims}")
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise DataError(f"{path} has {len(raw)} bytes, its header {list(dims)} needs {expected} "
                        "(truncated or corrupted file)")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
