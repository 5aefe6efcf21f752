"""SmallNORB (LeCun, Huang & Bottou, CVPR 2004) as VTAB's two pose tasks (Zhai et al. 2019,
"The Visual Task Adaptation Benchmark", arXiv 1910.04867): ``azimuth`` (18 classes) and
``elevation`` (9 classes), as in the sparse-training paper (ST, arXiv 2411.18615, §4.1).

Read from the official binary matrix files (https://cs.nyu.edu/~ylclab/data/norb-v1.0-small/,
optionally gzipped) directly under ``--data-root``::

    smallnorb-5x46789x9x18x6x2x96x96-training-dat.mat   bytes [24300, 2, 96, 96] (stereo pairs)
    smallnorb-5x46789x9x18x6x2x96x96-training-cat.mat   ints  [24300]  (category; optional)
    smallnorb-5x46789x9x18x6x2x96x96-training-info.mat  ints  [24300, 4]
    smallnorb-5x01235x9x18x6x2x96x96-testing-{dat,cat,info}.mat   (same shapes)

``info`` columns: instance (0-9), elevation (0-8), azimuth (0, 2, ..., 34), lighting (0-5).
The ``cat`` files are not needed by the pose tasks and may be absent; present, they are checked.
Labels: ``elevation`` = column 1; ``azimuth`` = column 2 / 2 (0-17), as TFDS/VTAB. Out-of-range
or odd azimuth values, a dat/info length mismatch or a header that disagrees with the file size
are errors. Only the first image of each stereo pair is used (VTAB's ``image``).

Splits (VTAB's ``smallnorb.py``): ``split="vtab1k"`` (default, the 1000-example protocol of ST):
train = the first 800 training examples, val = the first 200 test examples, test = the second
half of the test set; ``split="full"``: train = the whole training set, val = the first half of
the test set, test = its second half. ``n_train``/``n_val``/``n_test`` cap each split (first
examples in file order) for quick runs.

Transform: 96x96 grey -> ``image_size`` (bilinear, antialiased). For the torchvision backbones
the default is 224 and the grey image is repeated to RGB and ImageNet-normalised (VTAB feeds
RGB models at 224x224); otherwise 64, one channel, normalised to [-1, 1]. No augmentation.

Model: ``backbone="small_cnn"`` by default (CPU); ST uses ``vit_b_16`` (ImageNet-21K
pre-trained: ``backbone_params={weights="/path/vit_b_16.pth"}``). Heads: linear, with top-1
(``accuracy``) and top-5 (``top5``) as ST's Tab. 11. Baselines: ST's STL row of Tab. 11
(azimuth 32.92 / 70.06, elevation 36.56 / 94.67, top-1 / top-5 %) is used for Δm **only** under
its protocol (``backbone="vit_b_16"``, ``split="vtab1k"``, 224x224 input); under any other
protocol Δm against it would measure the protocol, not the method, so none is set.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from mtlkit_plugins.benchmarks._images import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PRETRAINED_STYLE,
    ImageTransform,
    LazyImages,
    first_n,
)
from mtlkit_plugins.benchmarks._norb import find_file, read_matrix
from mtlkit_plugins.benchmarks._vtab import VtabBenchmark
from mtlkit_plugins.heads.classification import Classification

from mtlkit import hookimpl
from mtlkit.benchmarks import Splits, Task
from mtlkit.errors import DataError

SOURCE = "https://cs.nyu.edu/~ylclab/data/norb-v1.0-small/"
FILES = {"train": "smallnorb-5x46789x9x18x6x2x96x96-training-{}.mat",
         "test": "smallnorb-5x01235x9x18x6x2x96x96-testing-{}.mat"}
#: ST Tab. 11, STL row (ViT-B/16, VTAB-1k), as fractions
ST_BASELINES = {"azimuth": {"accuracy": 0.3292, "top5": 0.7006},
                "elevation": {"accuracy": 0.3656, "top5": 0.9467}}
ST_SOURCE = ("ST (arXiv 2411.18615) Tab. 11 STL row: ViT-B/16 (ImageNet-21K), VTAB-1k; "
             "metric-level Δm over top-1 and top-5 of both tasks")


class ArrayImages:
    """Picklable ``load(i)`` over an in-memory ``uint8 [N, H, W]`` array."""

    def __init__(self, images: np.ndarray) -> None:
        self.images = images

    def __call__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(self.images[i]).unsqueeze(0)


def _check_categories(root: Path, name: str, n: int) -> None:
    """The category file is not needed by the pose tasks, so it may be absent; when present it
    must still be consistent, since a bad one signals a bad download."""
    if not (root / name).is_file() and not (root / (name + ".gz")).is_file():
        return
    path = find_file(root, name, SOURCE)
    cat = read_matrix(path)
    if cat.ndim != 1 or len(cat) != n or cat.dtype.kind not in "iu":
        raise DataError(f"{path}: expected {n} integer categories, got {cat.dtype} "
                        f"{list(cat.shape)} (mismatched files?)")
    if n and (cat.min() < 0 or cat.max() > 4):
        raise DataError(f"{path}: categories must be in 0..4, found {cat.min()}..{cat.max()}")


def read_part(root: Path, part: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(images uint8 [N, H, W] (first camera), elevation [N], azimuth [N])`` of one file set."""
    pattern = FILES[part]
    dat_path = find_file(root, pattern.format("dat"), SOURCE)
    info_path = find_file(root, pattern.format("info"), SOURCE)
    dat = read_matrix(dat_path)
    info = read_matrix(info_path)
    _check_categories(root, pattern.format("cat"), len(dat))
    if dat.ndim != 4 or dat.shape[1] != 2 or dat.dtype != np.uint8:
        raise DataError(f"{dat_path}: expected bytes of shape [N, 2, H, W] (stereo pairs), "
                        f"got {dat.dtype} {list(dat.shape)}")
    if info.ndim != 2 or info.shape[1] != 4 or info.dtype.kind not in "iu":
        raise DataError(f"{info_path}: expected integers of shape [N, 4], got {info.dtype} "
                        f"{list(info.shape)}")
    if len(info) != len(dat):
        raise DataError(f"{info_path} has {len(info)} rows but {dat_path} has {len(dat)} "
                        "images (mismatched files?)")
    elevation = info[:, 1].astype(np.int64)
    azimuth = info[:, 2].astype(np.int64)
    if len(info) and (elevation.min() < 0 or elevation.max() > 8):
        raise DataError(f"{info_path}: elevation (column 2) must be in 0..8, found "
                        f"{elevation.min()}..{elevation.max()}")
    if len(info) and (azimuth.min() < 0 or azimuth.max() > 34 or (azimuth % 2).any()):
        bad = azimuth[(azimuth < 0) | (azimuth > 34) | (azimuth % 2 == 1)][0]
        raise DataError(f"{info_path}: azimuth (column 3) must be one of 0, 2, ..., 34, "
                        f"found {bad}")
    return np.ascontiguousarray(dat[:, 0]), elevation, azimuth // 2


class SmallNORB(VtabBenchmark):
    """SmallNORB pose (VTAB): tasks ``azimuth`` (18 classes) and ``elevation`` (9 classes)."""

    name: ClassVar[str] = "smallnorb"
    source: ClassVar[str] = SOURCE
    layout: ClassVar[str] = "the six smallnorb-*.mat files"
    st_baselines: ClassVar[dict[str, dict[str, float]]] = ST_BASELINES
    st_source: ClassVar[str] = ST_SOURCE

    @property
    def rgb(self) -> bool:
        """Pre-trained backbones read grey images as 3 ImageNet-normalised channels."""
        return self.backbone in PRETRAINED_STYLE

    @property
    def tasks(self) -> list[Task]:
        return [Task("azimuth", Classification(18, top_k=(5,))),
                Task("elevation", Classification(9, top_k=(5,)))]

    def _indices(self, n_train: int, n_test: int) -> list[np.ndarray]:
        half = n_test // 2
        if self.split == "vtab1k":
            parts = [np.arange(min(800, n_train)), np.arange(min(200, half)),
                     np.arange(half, n_test)]
        else:
            parts = [np.arange(n_train), np.arange(half), np.arange(half, n_test)]
        return [first_n(p, cap) for p, cap in zip(parts, self.caps)]

    def splits(self) -> Splits:
        if self._splits is not None:
            return self._splits
        x_tr, el_tr, az_tr = read_part(self.root, "train")
        x_te, el_te, az_te = read_part(self.root, "test")
        if len(x_te) < 2:
            raise DataError(f"{self.root}: the testing files hold {len(x_te)} examples; "
                            "val and test need at least one each")
        i_tr, i_val, i_te = self._indices(len(x_tr), len(x_te))
        if self.rgb:
            transform = ImageTransform(self.image_size, IMAGENET_MEAN, IMAGENET_STD, rgb=True)
        else:
            transform = ImageTransform(self.image_size, (0.5,), (0.5,))
        datasets = []
        for (x, el, az), idx in (((x_tr, el_tr, az_tr), i_tr), ((x_te, el_te, az_te), i_val),
                                 ((x_te, el_te, az_te), i_te)):
            targets = {"azimuth": torch.from_numpy(az[idx]),
                       "elevation": torch.from_numpy(el[idx])}
            datasets.append(LazyImages(ArrayImages(x[idx]), len(idx), targets, transform))
        self._splits = Splits(*datasets)
        return self._splits

    def in_channels(self) -> int:
        return 3 if self.rgb else 1


@hookimpl
def register_benchmarks(register):
    register("smallnorb", SmallNORB)
