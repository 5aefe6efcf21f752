"""Reader for the IDX files of MNIST and Fashion-MNIST (``*-idx3-ubyte`` / ``*-idx1-ubyte``,
optionally ``.gz``), validating the header against the file size so that a truncated or
corrupted file is an error, never silently wrong data."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
from mtlkit_plugins.benchmarks._files import find_data_file, read_raw

from mtlkit.errors import DataError

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def find_file(root: Path, stem: str, source: str) -> Path:
    """``root/stem`` or ``root/stem.gz`` (also under ``raw/``); error names the expected path."""
    return find_data_file(root, stem, "IDX files", source, folders=("", "raw"))


def read_idx(path: Path) -> np.ndarray:
    raw = read_raw(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise DataError(f"{path} is not an IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated (header incomplete)")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_DTYPES[raw[2]])
    expected = header + int(np.prod(dims)) * dtype.itemsize
    if len(raw) != expected:
        raise DataError(f"{path} has {len(raw)} bytes, its header {dims} needs {expected} "
                        "(truncated or corrupted file)")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)


def read_pair(root: Path, images: str, labels: str, source: str, num_classes: int = 10
              ) -> tuple[np.ndarray, np.ndarray]:
    x = read_idx(find_file(root, images, source))
    y = read_idx(find_file(root, labels, source))
    if x.ndim != 3 or x.shape[1:] != (28, 28):
        raise DataError(f"{images}: expected images of shape [N, 28, 28], got {x.shape}")
    if y.ndim != 1 or len(y) != len(x):
        raise DataError(f"{labels}: expected {len(x)} labels, got shape {y.shape}")
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise DataError(f"{labels}: label values must be in [0, {num_classes}), "
                        f"found [{int(y.min())}, {int(y.max())}]")
    return x, y.astype(np.int64)
