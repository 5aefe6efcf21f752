"""CelebA (Liu et al., ICCV 2015, "Deep Learning Face Attributes in the Wild") as a multi-label
benchmark: one binary task per facial attribute.

Read from the official release (https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html) in its
published layout under ``--data-root``::

    img_align_celeba/000001.jpg ... 202599.jpg     (aligned and cropped, 178x218)
    list_attr_celeba.txt      (or Anno/list_attr_celeba.txt)
    list_eval_partition.txt   (or Eval/list_eval_partition.txt)

``list_attr_celeba.txt``: line 1 the image count, line 2 the 40 attribute names, then one line
per image ``NNNNNN.jpg`` followed by 40 values in {-1, 1}. ``list_eval_partition.txt``: one line
per image ``NNNNNN.jpg P`` with P = 0 (train, 162770), 1 (val, 19867), 2 (test, 19962): the
official splits, used as they are.

Tasks: the sparse-training paper (ST, arXiv 2411.18615, §4.1) uses the **first 10** of the 40
attributes (``attributes="first10"``, the default); Recon (App. B) and FAMO use all 40
(``attributes="all"``); any list of attribute names (case-insensitive) selects others. Task
names are the lower-cased attribute names (``5_o_clock_shadow``, ``arched_eyebrows``, ...); each
uses the :class:`~mtlkit_plugins.heads.binary.Binary` head (BCE; accuracy and F1).

Transform: the whole aligned 178x218 image is resized to ``image_size`` x ``image_size``
(bilinear, antialiased; default 64 as in the Multi-Objective-Optimization CelebA code of Sener &
Koltun, 224 for the torchvision backbones), optionally after a central 178x178 crop
(``center_crop=True``); scaled to [0, 1] and normalised with the ImageNet mean/std; random
horizontal flips on the training split only with ``augment=True`` (off by default).

Model: ``backbone="small_cnn"`` by default (a 0.4 M-parameter conv net: an epoch at 64x64 runs
on a CPU), ``resnet18`` (Recon), ``swin_t``/``swin_b`` (ST) with ``backbone_params={weights=...}``.
Baselines: none are shipped. ST reports only CelebA's Δm (Tab. 3), not its per-attribute STL
F1, and Recon only the STL average error over 40 tasks (8.38%, Tab. 2), which is no per-task
baseline; ``mtlkit train --baselines FILE`` supplies measured ones.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from mtlkit_plugins.benchmarks._images import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageFiles,
    ImageTransform,
    LazyImages,
    backbone_choice,
    build_encoder,
    check_count,
    default_image_size,
    first_n,
    require_root,
    split_caps,
)
from mtlkit_plugins.heads.binary import Binary

from mtlkit import hookimpl
from mtlkit.benchmarks import Benchmark, Splits, Task, TrainingDefaults
from mtlkit.errors import ConfigError, DataError
from mtlkit.models import MultiTaskModel

SOURCE = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"
LAYOUT = "img_align_celeba/, list_attr_celeba.txt and list_eval_partition.txt"


def _find(root: Path, name: str, subfolder: str) -> Path:
    for path in (root / name, root / subfolder / name):
        if path.is_file():
            return path
    raise DataError(f"missing file {root / name} (or {root / subfolder / name}); expected "
                    f"the official CelebA annotations from {SOURCE}")


def read_attributes(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    """``(attribute names, image file names, values int8 [N, A] in {0, 1})``."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    if len(lines) < 2:
        raise DataError(f"{path}: expected a count line and an attribute-name line")
    try:
        count = int(lines[0].strip())
    except ValueError:
        raise DataError(f"{path}: line 1 must be the image count, got {lines[0]!r}") from None
    names = lines[1].split()
    rows = [line.split(None, 1) for line in lines[2:] if line.strip()]
    if len(rows) != count:
        raise DataError(f"{path}: line 1 announces {count} images but {len(rows)} follow "
                        "(truncated file?)")
    for i, row in enumerate(rows):
        fields = 1 + (len(row[1].split()) if len(row) == 2 else 0)
        if fields != len(names) + 1:
            raise DataError(f"{path}, line {i + 3}: expected a file name and {len(names)} "
                            f"values, got {fields} fields")
    files = [row[0] for row in rows]
    # One vectorised parse of all 8 M values: int() per value takes ~10 s on the full file.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            flat = np.fromstring(" ".join(row[1] for row in rows), dtype=np.int64, sep=" ")
        except ValueError:
            flat = np.empty(0, dtype=np.int64)
    if flat.size != len(rows) * len(names):  # parsing stopped at a non-integer token
        for i, row in enumerate(rows):
            if not all(t.lstrip("-").isdigit() for t in row[1].split()):
                raise DataError(f"{path}, line {i + 3}: attribute values must be the "
                                "integers -1 or 1")
    values = flat.reshape(len(rows), len(names))
    bad = np.argwhere((values != -1) & (values != 1))
    if len(bad):
        i, j = bad[0]
        raise DataError(f"{path}, line {i + 3}: attribute value {values[i, j]} is not -1 or 1")
    return names, files, ((values + 1) // 2).astype(np.int8)


def read_partition(path: Path) -> dict[str, int]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    out: dict[str, int] = {}
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
            raise DataError(f"{path}, line {i + 1}: expected 'NNNNNN.jpg P' with P in "
                            f"{{0, 1, 2}}, got {line.strip()!r}")
        out[parts[0]] = int(parts[1])
    return out


def select_attributes(spec: Any, available: list[str]) -> list[str]:
    lower = {a.lower(): a for a in available}
    if spec in ("first10", None):
        return list(available[:10])
    if spec == "all":
        return list(available)
    items = spec.split(",") if isinstance(spec, str) else spec
    if not isinstance(items, (list, tuple)) or not items:
        raise ConfigError(f"invalid attributes={spec!r}: use first10, all, or a list of names")
    chosen = []
    for item in items:
        key = str(item).strip().lower()
        if key not in lower:
            raise ConfigError(f"invalid attributes entry {item!r}: CelebA attributes are "
                              f"{', '.join(available)}")
        chosen.append(lower[key])
    return chosen


class CelebA(Benchmark):
    """CelebA face attributes: one binary task per attribute (first 10 by default)."""

    name: ClassVar[str] = "celeba"
    defaults: ClassVar[TrainingDefaults] = TrainingDefaults(
        optimizer="adam", lr=1e-3, batch_size=256, epochs=30)

    def __init__(self, data_root: str | None = None, seed: int = 0,
                 attributes: Any = "first10", image_size: int | None = None,
                 center_crop: bool = False, augment: bool = False,
                 backbone: str = "small_cnn", backbone_params: dict[str, Any] | None = None,
                 weights: str | None = None,
                 n_train: int | None = None, n_val: int | None = None,
                 n_test: int | None = None) -> None:
        self.root = require_root(data_root, "celeba", LAYOUT, SOURCE)
        self.seed = seed
        self.backbone, self.backbone_params = backbone_choice(backbone, backbone_params,
                                                              weights)
        self.image_size = check_count("image_size", image_size) or default_image_size(
            backbone, 64)
        self.center_crop = bool(center_crop)
        self.augment = bool(augment)
        self.caps = split_caps(n_train, n_val, n_test)
        # The annotation files are small (~25 MB): read them now, so a bad file or an unknown
        # attribute is reported before anything is built.
        self._names, self._files, self._values = read_attributes(
            _find(self.root, "list_attr_celeba.txt", "Anno"))
        self.attributes = select_attributes(attributes, self._names)
        self._partition = read_partition(_find(self.root, "list_eval_partition.txt", "Eval"))
        self._splits: Splits | None = None

    @property
    def tasks(self) -> list[Task]:
        return [Task(a.lower(), Binary()) for a in self.attributes]

    def splits(self) -> Splits:
        if self._splits is not None:
            return self._splits
        images = self.root / "img_align_celeba"
        if not images.is_dir():
            raise DataError(f"missing folder {images}; expected the aligned CelebA images "
                            f"(img_align_celeba.zip) from {SOURCE}")
        missing = [f for f in self._files if f not in self._partition]
        if missing:
            raise DataError(f"{missing[0]} has attributes but no entry in "
                            "list_eval_partition.txt (mismatched annotation files?)")
        part = np.array([self._partition[f] for f in self._files])
        cols = [self._names.index(a) for a in self.attributes]
        datasets = []
        for p, cap in zip((0, 1, 2), self.caps):
            idx = first_n(np.flatnonzero(part == p), cap)
            paths = [images / self._files[i] for i in idx]
            for path in paths:  # a cheap stat per file: name the first missing one up front
                if not path.is_file():
                    raise DataError(f"missing image {path}; expected the official aligned "
                                    f"CelebA images from {SOURCE}")
            targets = {a.lower(): torch.from_numpy(self._values[idx, c].astype(np.float32))
                       for a, c in zip(self.attributes, cols)}
            transform = ImageTransform(self.image_size, IMAGENET_MEAN, IMAGENET_STD,
                                       center_square=self.center_crop,
                                       hflip=self.augment and p == 0)
            datasets.append(LazyImages(ImageFiles(paths, SOURCE), len(idx), targets, transform))
        for split, ds in zip(("train", "val", "test"), datasets):
            if len(ds) == 0:
                raise DataError(f"{self.root / 'list_eval_partition.txt'} assigns no image to "
                                f"the {split} split")
        self._splits = Splits(*datasets)
        return self._splits

    def build_model(self, tasks: list[str] | None = None) -> MultiTaskModel:
        encoder = build_encoder(self.backbone, self.backbone_params, {"in_channels": 3})
        heads = {t.name: t.head.build(encoder.out_features) for t in self.tasks
                 if tasks is None or t.name in tasks}
        return MultiTaskModel(encoder, heads)

    def describe(self) -> dict[str, object]:
        return {"source": str(self.root), "attributes": self.attributes,
                "image_size": self.image_size, "center_crop": self.center_crop,
                "augment": self.augment, "backbone": self.backbone,
                "caps": dict(zip(("n_train", "n_val", "n_test"), self.caps))}


@hookimpl
def register_benchmarks(register):
    register("celeba", CelebA)
