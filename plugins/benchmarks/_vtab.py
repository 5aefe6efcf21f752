"""What the VTAB benchmarks of the sparse-training paper (CLEVR, SmallNORB) share.

Both take a ``split`` (``vtab1k``: 800 train + 200 val, VTAB-1k style; ``full``), a backbone
(plain-torch ``small_cnn`` by default, torchvision ``vit_b_16`` for the paper's protocol), an
image size and per-split caps; both quote the paper's single-task baselines only under its
exact protocol (ViT-B/16, VTAB-1k, 224x224), since Δm under any other protocol would measure
the protocol rather than the method.
"""

from __future__ import annotations

from typing import Any, ClassVar

from mtlkit_plugins.benchmarks._images import (
    backbone_choice,
    build_encoder,
    check_choice,
    check_count,
    default_image_size,
    require_root,
    split_caps,
)

from mtlkit.benchmarks import Benchmark, Splits, TrainingDefaults
from mtlkit.models import MultiTaskModel

SPLITS = ("vtab1k", "full")
PAPER_PROTOCOL = ("vit_b_16", "vtab1k", 224)


class VtabBenchmark(Benchmark):
    """Constructor, baselines, model and description common to the VTAB benchmarks.

    Subclasses set :attr:`source`, :attr:`layout`, :attr:`st_baselines`, :attr:`st_source`,
    and implement ``tasks`` and ``splits``.
    """

    # ST: batch 128, lr in {2e-4, 5e-5} for ViT (optimizer not stated); adam 1e-3 suits the
    # from-scratch CPU default.
    defaults: ClassVar[TrainingDefaults] = TrainingDefaults(
        optimizer="adam", lr=1e-3, batch_size=128, epochs=30)
    source: ClassVar[str] = ""
    layout: ClassVar[str] = ""
    st_baselines: ClassVar[dict[str, dict[str, float]]] = {}
    st_source: ClassVar[str] = ""
    baseline_source: str = ""

    def __init__(self, data_root: str | None = None, seed: int = 0, split: str = "vtab1k",
                 image_size: int | None = None, backbone: str = "small_cnn",
                 backbone_params: dict[str, Any] | None = None,
                 weights: str | None = None, n_train: int | None = None,
                 n_val: int | None = None, n_test: int | None = None) -> None:
        self.root = require_root(data_root, self.name, self.layout, self.source)
        self.seed = seed
        self.split = check_choice("split", split, SPLITS)
        self.backbone, self.backbone_params = backbone_choice(backbone, backbone_params,
                                                              weights)
        self.image_size = check_count("image_size", image_size) or default_image_size(
            backbone, 64)
        self.caps = split_caps(n_train, n_val, n_test)
        if (self.backbone, self.split, self.image_size) == PAPER_PROTOCOL:
            self.baseline_source = self.st_source
        self._splits: Splits | None = None

    @property
    def stl_baselines(self) -> dict[str, dict[str, float]] | None:
        return self.st_baselines if self.baseline_source else None

    def in_channels(self) -> int:
        return 3

    def build_model(self, tasks: list[str] | None = None) -> MultiTaskModel:
        encoder = build_encoder(self.backbone, self.backbone_params,
                                {"in_channels": self.in_channels(),
                                 "image_size": self.image_size})
        heads = {t.name: t.head.build(encoder.out_features) for t in self.tasks
                 if tasks is None or t.name in tasks}
        return MultiTaskModel(encoder, heads)

    def describe(self) -> dict[str, object]:
        return {"source": str(self.root), "split": self.split, "image_size": self.image_size,
                "backbone": self.backbone, "baselines": self.baseline_source or None,
                "caps": dict(zip(("n_train", "n_val", "n_test"), self.caps))}
