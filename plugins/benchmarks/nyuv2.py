"""NYUv2: 13-class semantic segmentation, depth and surface normals (indoor scenes).

Data: the preprocessed ``.npy`` release of MTAN (Liu, Johns & Davison, CVPR 2019; lorenmt/mtan
README), used unchanged by CAGrad, Nash-MTL, Recon and the sparse-training paper: 795
training and 654 test images (the ``val`` folder) of 288x384, from NYU Depth v2 (Silberman et
al., ECCV 2012) with the 13-class labels of Couprie et al. and the normals of Eigen & Fergus
(ICCV 2015). Folder layout and checks: :mod:`mtlkit_plugins.benchmarks._dense_npy`::

    ROOT/{train,val}/image/{i}.npy    float [288, 384, 3]
    ROOT/{train,val}/label/{i}.npy    [288, 384], 0..12, -1 = unlabelled
    ROOT/{train,val}/depth/{i}.npy    float [288, 384, 1], 0 = unknown
    ROOT/{train,val}/normal/{i}.npy   float [288, 384, 3], 0 = unknown

Tasks: ``segmentation`` (mIoU, pixel accuracy), ``depth`` (abs/rel error), ``normal`` (angle
mean/median, fraction within 11.25/22.5/30 degrees). Default model: MTAN (SegNet + task
attention); ``backbone=segnet`` gives the hard-sharing SegNet.

Protocol defaults (papers.md §1.4; CAGrad App. B.2, code ``nyuv2/model_segnet_mt.py``):
Adam, lr 1e-4, batch 2, 200 epochs, augmentation on, test batch 2. The learning rate is halved
at epoch 100 (the reference's ``StepLR(100, 0.5)``). The papers report the mean of the last 10
epochs over 3 seeds: read it from ``epochs.csv`` of three runs.

Single-task baselines (for Δm), ``baselines=``:

``cagrad`` (default)
    SegNet STL ``BASE = [0.3830, 0.6376, 0.6754, 0.2780, 25.01, 19.21, 0.3014, 0.5720,
    0.6915]`` from CAGrad (Cranial-XIX/CAGrad ``nyuv2/plot.py``), also used by Nash-MTL
    (AvivNavon/nash-mtl ``experiments/nyuv2/utils.py``) and the sparse-training paper; compare
    with the metric-level Δm (``delta_m``).
``st``
    the same values, under the sparse-training paper's name.
``recon``
    Recon's STL row (Shi et al., ICLR 2023, Tab. 3), converted from percent to fractions;
    compare with the task-level Δm (``delta_m_task_level``).
"""

from __future__ import annotations

from typing import ClassVar

from mtlkit_plugins.benchmarks._dense_npy import DenseNpyBenchmark, Field, Layout

from mtlkit import hookimpl
from mtlkit.benchmarks import TrainingDefaults

NYUV2_SOURCE = ("the preprocessed NYUv2 of MTAN (lorenmt/mtan README): "
                "https://www.dropbox.com/sh/86nssgwm6hm3vkb/AACrnUQ4GxpdrBbLjb6n-mWNa?dl=0")


def _nyu(miou, pix, abs_err, rel_err, mean, median, w11, w22, w30):
    return {"segmentation": {"miou": miou, "pixel_acc": pix},
            "depth": {"abs_err": abs_err, "rel_err": rel_err},
            "normal": {"mean_angle": mean, "median_angle": median, "within_11_25": w11,
                       "within_22_5": w22, "within_30": w30}}


class NYUv2(DenseNpyBenchmark):
    """NYUv2 (MTAN preprocessed): segmentation (13 classes), depth, normals."""

    name: ClassVar[str] = "nyuv2"
    defaults: ClassVar[TrainingDefaults] = TrainingDefaults(
        optimizer="adam", lr=1e-4, batch_size=2, epochs=200, eval_batch_size=2,
        lr_milestones=(100,), lr_gamma=0.5)
    layout: ClassVar[Layout] = Layout(
        name="NYUv2", source=NYUV2_SOURCE, num_classes=13,
        fields=(Field("image", "image"), Field("label", "label", "segmentation"),
                Field("depth", "depth", "depth"), Field("normal", "normal", "normal")))
    subfolders: ClassVar[tuple[str, ...]] = ("nyuv2", "nyu_v2", "NYUv2", "nyu")
    baseline_sets: ClassVar[dict] = {
        "cagrad": ("CAGrad/Nash-MTL SegNet STL BASE (Cranial-XIX/CAGrad nyuv2/plot.py; "
                   "AvivNavon/nash-mtl experiments/nyuv2/utils.py)",
                   _nyu(0.3830, 0.6376, 0.6754, 0.2780, 25.01, 19.21, 0.3014, 0.5720, 0.6915)),
        "st": ("sparse-training paper (arXiv 2411.18615), which uses the CAGrad/Nash-MTL "
               "SegNet STL BASE (Cranial-XIX/CAGrad nyuv2/plot.py)",
               _nyu(0.3830, 0.6376, 0.6754, 0.2780, 25.01, 19.21, 0.3014, 0.5720, 0.6915)),
        "recon": ("Recon STL (Shi et al., ICLR 2023, Tab. 3; percentages as fractions)",
                  _nyu(0.3867, 0.6427, 0.6881, 0.2788, 24.87, 18.99, 0.3043, 0.5781, 0.6970)),
    }
    default_baselines: ClassVar[str] = "cagrad"


@hookimpl
def register_benchmarks(register):
    register("nyuv2", NYUv2)
