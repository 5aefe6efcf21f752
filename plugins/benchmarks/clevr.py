"""CLEVR v1.0 (Johnson et al., CVPR 2017) as VTAB's two tasks (Zhai et al. 2019, arXiv
1910.04867): ``count_all`` and ``closest_object_distance``, the "Clevr" benchmark of the
sparse-training paper (ST, arXiv 2411.18615, §4.1: counting and depth).

Read from the official release (https://cs.stanford.edu/people/jcjohns/clevr/,
``CLEVR_v1.0.zip``) in its published layout under ``--data-root`` (the ``CLEVR_v1.0`` folder)::

    images/train/CLEVR_train_000000.png ...   (480x320 RGBA)
    images/val/CLEVR_val_000000.png ...
    scenes/CLEVR_train_scenes.json
    scenes/CLEVR_val_scenes.json

Each scenes file is ``{"info": ..., "scenes": [{"image_index", "image_filename", "objects":
[{"pixel_coords": [x, y, depth], ...}, ...]}, ...]}``; the test images carry no scenes and are
not used (VTAB evaluates on CLEVR's val split).

Labels (VTAB ``clevr.py``):

* ``count_all``: the number of objects minus 3 (CLEVR scenes hold 3 to 10 objects; 8 classes);
* ``closest_object_distance``: d = the smallest ``pixel_coords[2]`` (depth) over the objects,
  binned with thresholds [0, 8.0, 8.5, 9.0, 9.5, 10.0, 100]: the label is the largest i with
  threshold[i] < d (6 classes). A scene with another object count or a depth outside
  (0, 100] is an error, never a silently wrong label.

Splits (VTAB): scenes ordered by ``image_index``; ``split="vtab1k"`` (default, the 1000-example
protocol of ST): train = the first 800 training scenes, val = 200 scenes starting at 90% of
the training set, test = all of CLEVR val; ``split="full"``: train = the first 90% of the
training set, val = the remaining 10%, test = CLEVR val. ``n_train``/``n_val``/``n_test`` cap
each split (first examples) for quick runs. (VTAB reads TFDS, whose record order may differ
from ``image_index`` order; the protocol, not the identical 1000 images, is reproduced.)

Transform: the RGB image (alpha dropped) is resized to ``image_size`` x ``image_size`` (VTAB:
224 for ViT; default 224 for the torchvision backbones, 64 otherwise), ImageNet-normalised.
No augmentation.

Model: ``backbone="small_cnn"`` by default (CPU); ST uses ``vit_b_16`` (ImageNet-21K).
Baselines: ST's STL Top-1 (Tab. 3: count 58.64, depth 57.68 %) apply for Δm **only** under its
protocol (``backbone="vit_b_16"``, ``split="vtab1k"``, 224x224); ST's Clevr Δm is the
metric-level mean of the two top-1 accuracies. Under any other protocol no baseline is set.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from mtlkit_plugins.benchmarks._images import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageFiles,
    ImageTransform,
    LazyImages,
    first_n,
    require_file,
)
from mtlkit_plugins.benchmarks._vtab import VtabBenchmark
from mtlkit_plugins.heads.classification import Classification

from mtlkit import hookimpl
from mtlkit.benchmarks import Splits, Task
from mtlkit.errors import DataError

SOURCE = "https://cs.stanford.edu/people/jcjohns/clevr/ (CLEVR_v1.0.zip)"
DISTANCE_THRESHOLDS = (0.0, 8.0, 8.5, 9.0, 9.5, 10.0, 100.0)
ST_BASELINES = {"count_all": {"accuracy": 0.5864},
                "closest_object_distance": {"accuracy": 0.5768}}
ST_SOURCE = ("ST (arXiv 2411.18615) Tab. 3 STL row: ViT-B/16 (ImageNet-21K), VTAB-1k; "
             "metric-level Δm over the two top-1 accuracies")


def distance_label(depth: float) -> int:
    """VTAB's bin of the closest object's depth: the largest i with threshold[i] < depth."""
    return max(i for i, t in enumerate(DISTANCE_THRESHOLDS) if t < depth)


def read_scenes(path: Path, split: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``(image file names, count_all labels, closest_object_distance labels)``, by index."""
    try:
        with path.open(encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc} (truncated or corrupted file?)") from None
    scenes = data.get("scenes") if isinstance(data, dict) else None
    if not isinstance(scenes, list):
        raise DataError(f"{path}: expected an object with a 'scenes' list")
    files, counts, dists = [], [], []
    try:
        scenes = sorted(scenes, key=lambda s: int(s["image_index"]))
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{path}: every scene needs an integer 'image_index'") from None
    for s in scenes:
        where = f"{path}, scene image_index={s['image_index']}"
        objects = s.get("objects")
        name = s.get("image_filename", f"CLEVR_{split}_{int(s['image_index']):06d}.png")
        if not isinstance(objects, list):
            raise DataError(f"{where}: missing 'objects' list")
        if not 3 <= len(objects) <= 10:
            raise DataError(f"{where}: {len(objects)} objects; CLEVR scenes hold 3 to 10, so "
                            "count_all (8 classes) cannot label it")
        try:
            depth = min(float(o["pixel_coords"][2]) for o in objects)
        except (KeyError, TypeError, IndexError, ValueError):
            raise DataError(f"{where}: every object needs 'pixel_coords' [x, y, depth]"
                            ) from None
        if not 0.0 < depth <= 100.0:
            raise DataError(f"{where}: closest depth {depth} is outside (0, 100], the range "
                            "of VTAB's closest_object_distance bins")
        files.append(str(name))
        counts.append(len(objects) - 3)
        dists.append(distance_label(depth))
    return files, np.array(counts, dtype=np.int64), np.array(dists, dtype=np.int64)


class Clevr(VtabBenchmark):
    """CLEVR (VTAB): ``count_all`` (8 classes) and ``closest_object_distance`` (6 classes)."""

    name: ClassVar[str] = "clevr"
    source: ClassVar[str] = SOURCE
    layout: ClassVar[str] = "images/{train,val}/ and scenes/ of CLEVR v1.0"
    st_baselines: ClassVar[dict[str, dict[str, float]]] = ST_BASELINES
    st_source: ClassVar[str] = ST_SOURCE

    @property
    def tasks(self) -> list[Task]:
        return [Task("count_all", Classification(8)),
                Task("closest_object_distance", Classification(6))]

    def _part(self, split: str, idx: np.ndarray, files: list[str], counts: np.ndarray,
              dists: np.ndarray, transform: ImageTransform) -> LazyImages:
        folder = self.root / "images" / split
        paths = [folder / files[i] for i in idx]
        for p in paths:  # a cheap stat per file: name the first missing one up front
            require_file(p, SOURCE, "image")
        targets = {"count_all": torch.from_numpy(counts[idx]),
                   "closest_object_distance": torch.from_numpy(dists[idx])}
        return LazyImages(ImageFiles(paths, SOURCE), len(idx), targets, transform)

    def splits(self) -> Splits:
        if self._splits is not None:
            return self._splits
        scenes = self.root / "scenes"
        train = read_scenes(require_file(scenes / "CLEVR_train_scenes.json", SOURCE), "train")
        val = read_scenes(require_file(scenes / "CLEVR_val_scenes.json", SOURCE), "val")
        n = len(train[0])
        cut = 90 * n // 100
        if cut == 0 or cut == n or not val[0]:
            raise DataError(f"{scenes}: too few scenes ({n} train, {len(val[0])} val) to form "
                            "train, val and test splits")
        if self.split == "vtab1k":
            i_tr, i_val = np.arange(min(800, cut)), np.arange(cut, min(cut + 200, n))
        else:
            i_tr, i_val = np.arange(cut), np.arange(cut, n)
        i_te = np.arange(len(val[0]))
        i_tr, i_val, i_te = (first_n(p, c) for p, c in zip((i_tr, i_val, i_te), self.caps))
        transform = ImageTransform(self.image_size, IMAGENET_MEAN, IMAGENET_STD)
        self._splits = Splits(self._part("train", i_tr, *train, transform),
                              self._part("train", i_val, *train, transform),
                              self._part("val", i_te, *val, transform))
        return self._splits


@hookimpl
def register_benchmarks(register):
    register("clevr", Clevr)
