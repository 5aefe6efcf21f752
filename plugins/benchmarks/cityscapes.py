"""CityScapes: 7-class semantic segmentation and (inverse) depth (street scenes).

Data: the preprocessed ``.npy`` release of MTAN (Liu, Johns & Davison, CVPR 2019; lorenmt/mtan
README), used by CAGrad, Recon and the sparse-training paper: 2975 training and 500 test
images (the ``val`` folder) of 128x256 from Cityscapes (Cordts et al., CVPR 2016), with 2-, 7-
and 19-class labels and inverse-depth (disparity) maps. The protocol uses the 7 classes,
read from ``label_7`` (Cranial-XIX/CAGrad ``cityscapes/create_dataset.py``)::

    ROOT/{train,val}/image/{i}.npy      float [128, 256, 3]
    ROOT/{train,val}/label_7/{i}.npy    [128, 256], 0..6, -1 = unlabelled
    ROOT/{train,val}/depth/{i}.npy      float [128, 256, 1], 0 = unknown

``classes=19`` (or 2) reads ``label_19`` (``label_2``) instead; no baselines are shipped for
those. Folder checks: :mod:`mtlkit_plugins.benchmarks._dense_npy`. The 256x512 release has
the same layout and works unchanged.

Tasks: ``segmentation`` (mIoU, pixel accuracy), ``depth`` (abs/rel error). Default model:
MTAN; ``backbone=segnet`` is the hard-sharing SegNet Recon uses on CityScapes.

Protocol defaults (papers.md §1.4; CAGrad ``cityscapes/model_segnet_mtan.py``, ``run.sh``):
Adam, lr 1e-4, batch 8, 200 epochs, augmentation on, test batch 8 (Recon: lr 5e-5). The learning
rate is halved at epoch 100 (``StepLR(100, 0.5)``). The papers average the last 10 epochs over
3 seeds: read it from ``epochs.csv`` of three runs.

Single-task baselines (for Δm, 7 classes), ``baselines=``:

``cagrad`` (default)
    ``BASE = [0.7401, 0.9316, 0.0125, 27.77]`` (mIoU, pixel acc, abs err, rel err) from
    Cranial-XIX/CAGrad ``cityscapes/plot.py``; metric-level Δm.
``st``
    the sparse-training paper's STL row (arXiv 2411.18615, Tab. 12): 77.61 / 94.15 / 0.0122 /
    35.68 (percentages as fractions); metric-level Δm.
``recon``
    Recon's STL row (ICLR 2023, Tab. 5): 74.36 / 93.22 / 0.0128 / 29.98; task-level Δm.

The relative error is a ratio (not a percentage): it is large because inverse depths are close
to 0.
"""

from __future__ import annotations

from typing import Any, ClassVar

from mtlkit_plugins.benchmarks._dense_npy import DenseNpyBenchmark, Field, Layout

from mtlkit import hookimpl
from mtlkit.benchmarks import TrainingDefaults
from mtlkit.errors import ConfigError

CITYSCAPES_SOURCE = ("the preprocessed CityScapes of MTAN (lorenmt/mtan README), 128x256: "
                     "https://www.dropbox.com/sh/gaw6vh6qusoyms6/AADwWi0Tp3E3M4B2xzeGlsEna?dl=0")
CLASSES = (2, 7, 19)


def _layout(classes: int) -> Layout:
    return Layout(name="CityScapes", source=CITYSCAPES_SOURCE, num_classes=classes,
                  fields=(Field("image", "image"),
                          Field(f"label_{classes}", "label", "segmentation"),
                          Field("depth", "depth", "depth")))


def _city(miou: float, pix: float, abs_err: float, rel_err: float) -> dict:
    return {"segmentation": {"miou": miou, "pixel_acc": pix},
            "depth": {"abs_err": abs_err, "rel_err": rel_err}}


BASELINES_7 = {
    "cagrad": ("CAGrad SegNet/MTAN STL BASE, 7 classes (Cranial-XIX/CAGrad cityscapes/plot.py)",
               _city(0.7401, 0.9316, 0.0125, 27.77)),
    "st": ("sparse-training paper STL (arXiv 2411.18615, Tab. 12; percentages as fractions)",
           _city(0.7761, 0.9415, 0.0122, 35.68)),
    "recon": ("Recon STL (Shi et al., ICLR 2023, Tab. 5; percentages as fractions)",
              _city(0.7436, 0.9322, 0.0128, 29.98)),
}


class CityScapes(DenseNpyBenchmark):
    """CityScapes (MTAN preprocessed): segmentation (7 classes) and depth."""

    name: ClassVar[str] = "cityscapes"
    defaults: ClassVar[TrainingDefaults] = TrainingDefaults(
        optimizer="adam", lr=1e-4, batch_size=8, epochs=200, eval_batch_size=8,
        lr_milestones=(100,), lr_gamma=0.5)
    layout: ClassVar[Layout] = _layout(7)
    subfolders: ClassVar[tuple[str, ...]] = ("cityscapes", "CityScapes", "Cityscapes")
    baseline_sets: ClassVar[dict] = BASELINES_7
    default_baselines: ClassVar[str] = "cagrad"

    def __init__(self, data_root: str | None = None, seed: int = 0, classes: int = 7,
                 **params: Any) -> None:
        if classes not in CLASSES:
            raise ConfigError(f"invalid classes={classes!r}: must be one of "
                              f"{', '.join(map(str, CLASSES))} (the label_2/7/19 folders)")
        self.classes = classes
        if classes != 7:
            # instance attributes shadow the class defaults: no published baseline exists
            self.layout = _layout(classes)  # type: ignore[misc]
            self.baseline_sets = {}  # type: ignore[misc]
            self.default_baselines = "none"  # type: ignore[misc]
        super().__init__(data_root=data_root, seed=seed, **params)

    def describe(self) -> dict[str, Any]:
        return {"classes": self.classes, **super().describe()}


@hookimpl
def register_benchmarks(register):
    register("cityscapes", CityScapes)
