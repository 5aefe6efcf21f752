"""Shared machinery of the Office-31 and Office-Home benchmarks (LibMTL's multi-input setting).

**Tasks.** Each domain is a task: classify its own images into the dataset's classes (31 or
65). Unlike every other bundled benchmark, tasks do not share inputs: an Amazon product photo
has no DSLR label. LibMTL (``multi_input=True``) keeps one data loader per domain and, at each
step, draws one batch from every loader (restarting the shorter ones), forwarding each through
the model separately.

**How a batch is formed here.** One dataset item holds *one image per domain*: item ``i`` is
``x[i] = [image_1, ..., image_D]`` (``[D, 3, S, S]``) with targets ``{domain: label}``, so a
batch is ``x [B, D, 3, S, S]``: a sub-batch of ``B`` images per domain, each task's loss is the
mean over its own sub-batch, and the trainer (which moves one tensor and one target dict per
batch) needs no change. Training split: ``len = max_d n_d`` and domain ``d`` contributes image
``i mod n_d`` (shorter domains cycle, as LibMTL restarts their loaders; one epoch = one pass
over the largest domain, LibMTL's ``max`` of the loaders' lengths). Validation / test: the
shorter domains are padded with label ``-1`` (and a zero image), which
:class:`DomainClassification` leaves out of the loss and the metrics, so every domain is
evaluated on each of its images exactly once.

**Model.** :class:`MultiInputModel` runs the inner model once per domain sub-batch (BatchNorm
statistics per domain, as LibMTL's per-task forwards) and gives task ``d`` the output of
domain ``d``'s run. The inner model is any encoder + heads model, or one of the architectures
of docs/architectures.md rebuilt from it (``architecture=``); the shared / task split is the
inner model's.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import attrs
import numpy as np
import torch
from mtlkit_plugins.architectures._base import apply_architecture
from mtlkit_plugins.benchmarks._digits import stratified_split
from mtlkit_plugins.benchmarks._images import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageTransform,
    backbone_choice,
    build_encoder,
    check_count,
    decode_image,
    default_image_size,
    first_n,
    require_root,
    split_caps,
)
from mtlkit_plugins.heads.classification import Classification
from torch import nn
from torch.nn import functional as F
from torch.utils.data import Dataset

from mtlkit.benchmarks import Benchmark, Splits, Task, TrainingDefaults
from mtlkit.errors import ConfigError, DataError
from mtlkit.models import MultiTaskModel
from mtlkit.tasks import MetricAccumulator

#: label of a padding slot: no image of this domain in this item
PAD = -1
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class _Unpadded(MetricAccumulator):
    """Another accumulator, fed only the slots that hold an image."""

    def __init__(self, inner: MetricAccumulator) -> None:
        self.inner = inner

    def update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        keep = target.long() != PAD
        self.inner.update(output[keep], target[keep])

    def compute(self) -> dict[str, float]:
        return self.inner.compute()


class DomainClassification(Classification):
    """Classification whose padding slots (label ``-1``) count in neither loss nor metrics."""

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = target.long()
        if bool((target == PAD).all()):  # no image of this domain: a zero loss, not 0/0
            return output.sum() * 0.0
        return F.cross_entropy(output, target, ignore_index=PAD)

    def metrics(self) -> MetricAccumulator:
        return _Unpadded(super().metrics())


class MultiInputModel(MultiTaskModel):
    """``x [B, D, ...] -> {task: inner(x[:, slot(task)])[task]}``; see the module doc.

    The representation stacks, in task order, each task's representation computed from its
    own domain (``[B, K, ...]``), so "-UB" aggregators see per-task gradients.
    """

    def __init__(self, inner: MultiTaskModel, slots: Mapping[str, int]) -> None:
        nn.Module.__init__(self)
        missing = [t for t in inner.task_names if t not in slots]
        if missing:
            raise ValueError(f"tasks {missing} have no input slot")
        self.inner = inner
        self.slots = {t: slots[t] for t in inner.task_names}

    @property
    def task_names(self) -> list[str]:
        return self.inner.task_names

    @property
    def heads(self) -> nn.ModuleDict:
        return self.inner.heads

    def represent(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.inner.represent(x[:, self.slots[t]])
                            for t in self.task_names], dim=1)

    def heads_forward(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        return {t: self.inner.heads_forward(z[:, i])[t] for i, t in enumerate(self.task_names)}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {t: self.inner(x[:, self.slots[t]])[t] for t in self.task_names}

    def shared_named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(f"inner.{n}", p) for n, p in self.inner.shared_named_parameters()]

    def task_named_parameters(self, task: str) -> list[tuple[str, nn.Parameter]]:
        return [(f"inner.{n}", p) for n, p in self.inner.task_named_parameters(task)]


class DomainImages(Dataset):
    """One image per domain per item; ``cycle`` (train) or ``PAD``-padded (val / test)."""

    def __init__(self, domains: Mapping[str, tuple[Sequence[Path], np.ndarray]],
                 transform, source: str, cycle: bool) -> None:
        self.names = list(domains)
        self.paths = [list(domains[d][0]) for d in self.names]
        self.labels = [torch.as_tensor(domains[d][1], dtype=torch.long) for d in self.names]
        for d, paths in zip(self.names, self.paths):
            if not paths:
                raise DataError(f"domain {d!r} has no image in this split")
        self.n = max(len(p) for p in self.paths)
        self.transform = transform
        self.source = source
        self.cycle = cycle
        self._shape: tuple[int, ...] | None = None

    def __len__(self) -> int:
        return self.n

    def _image(self, k: int, j: int) -> torch.Tensor:
        x = self.transform(decode_image(self.paths[k][j], self.source, "RGB"))
        self._shape = tuple(x.shape)
        return x

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        images: list[torch.Tensor | None] = []
        targets = {}
        for k, d in enumerate(self.names):
            n = len(self.paths[k])
            if self.cycle or i < n:
                images.append(self._image(k, i % n))
                targets[d] = self.labels[k][i % n]
            else:
                images.append(None)
                targets[d] = torch.tensor(PAD)
        shape = self._shape or next(im.shape for im in images if im is not None)
        x = torch.stack([im if im is not None else torch.zeros(shape) for im in images])
        return x, targets


def scan_domain(folder: Path, num_classes: int, source: str
                ) -> tuple[list[str], list[Path], np.ndarray]:
    """``(class names (sorted), image paths, labels)`` of ``folder/<class>/<image>``."""
    if not folder.is_dir():
        raise DataError(f"missing folder {folder}; expected the official layout from {source}")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if len(classes) != num_classes:
        raise DataError(f"{folder} holds {len(classes)} class folders, expected {num_classes} "
                        f"(the official layout from {source})")
    paths: list[Path] = []
    labels: list[int] = []
    for c, name in enumerate(classes):
        files = sorted(p for p in (folder / name).iterdir()
                       if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"class folder {folder / name} holds no image "
                            f"({', '.join(IMAGE_SUFFIXES)})")
        paths += files
        labels += [c] * len(files)
    return classes, paths, np.asarray(labels, dtype=np.int64)


def read_split_list(path: Path, base: Path, num_classes: int, domain: str = "",
                    folder: Path | None = None) -> tuple[list[Path], np.ndarray]:
    """A LibMTL ``data_txt`` list: lines ``<path relative to the dataset folder> <label>``.
    Paths starting with ``domain/`` (LibMTL's name, e.g. ``Real_World``) are read from
    ``folder`` (the folder found, e.g. the official ``Real World``)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(f"missing split list {path} (LibMTL's examples/office/data_txt "
                        "layout: <Domain>_<train|val|test>.txt)") from None
    paths, labels = [], []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        rel, _, label = line.strip().rpartition(" ")
        if not rel or not label.isdigit() or int(label) >= num_classes:
            raise DataError(f"{path}, line {i + 1}: expected '<image path> <label in "
                            f"[0, {num_classes})>', got {line.strip()!r}")
        head, _, tail = rel.partition("/")
        image = folder / tail if folder is not None and head == domain and tail else base / rel
        if not image.is_file():
            raise DataError(f"{path}, line {i + 1}: missing image {image}")
        paths.append(image)
        labels.append(int(label))
    if not paths:
        raise DataError(f"split list {path} lists no image")
    return paths, np.asarray(labels, dtype=np.int64)


class _BatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d that normalises a one-example training batch with its running statistics
    (a batch of one has no batch variance; the trainer keeps a last, possibly size-1 batch,
    where LibMTL's loaders drop it)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] == 1:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                False, 0.0, self.eps)
        return super().forward(x)


def hidden_layer(in_features: int, width: int) -> nn.Sequential:
    """LibMTL's Office encoder top: Linear - BatchNorm1d - ReLU - Dropout(0.5), with its
    initialisation (weights N(0, 0.005), biases 0.1)."""
    fc = nn.Linear(in_features, width)
    with torch.no_grad():
        fc.weight.normal_(0, 0.005)
        fc.bias.fill_(0.1)
    return nn.Sequential(fc, _BatchNorm1d(width), nn.ReLU(), nn.Dropout(0.5))


@attrs.frozen
class Layout:
    """Where a dataset's images are, relative to ``--data-root``."""

    #: dataset folder names tried under the root (then the root itself)
    folders: tuple[str, ...]
    #: ``(task name, accepted domain folder names)`` in task order
    domains: tuple[tuple[str, tuple[str, ...]], ...]
    #: LibMTL's ``data_txt`` domain names, in task order
    libmtl: tuple[str, ...]
    #: sub-folder between a domain folder and its class folders ("" for none)
    images: str
    num_classes: int
    source: str

    def describe(self) -> str:
        d = self.domains
        sub = f"/{self.images}" if self.images else ""
        return (f"{self.folders[0]}/{{{','.join(n[0] for _, n in d)}}}{sub}/<class>/*.jpg "
                f"({self.num_classes} class folders per domain)")


class OfficeBenchmark(Benchmark):
    """Base of the Office benchmarks; see the module doc and docs/datasets-vision.md."""

    layout: ClassVar[Layout]
    #: LibMTL's examples/office protocol: Adam, lr 1e-4, weight decay 1e-5, 64 images per
    #: domain per step (for evaluation too: an item holds one image per domain), 100 epochs,
    #: no schedule
    defaults: ClassVar[TrainingDefaults] = TrainingDefaults(
        optimizer="adam", lr=1e-4, batch_size=64, epochs=100, weight_decay=1e-5,
        eval_batch_size=64)
    fractions: ClassVar[tuple[float, float, float]] = (0.6, 0.2, 0.2)

    def __init__(self, data_root: str | None = None, seed: int = 0, data_seed: int = 0,
                 split_lists: str | None = None, image_size: int | None = None,
                 backbone: str = "small_cnn", backbone_params: dict[str, Any] | None = None,
                 weights: str | None = None, hidden: int | None = 512,
                 architecture: str | None = None,
                 architecture_params: dict[str, Any] | None = None,
                 n_train: int | None = None, n_val: int | None = None,
                 n_test: int | None = None) -> None:
        lay = self.layout
        root = require_root(data_root, self.name, lay.describe(), lay.source)
        self.base, self.domain_folders = self._find(root)
        self.seed = seed
        self.data_seed = data_seed
        self.split_lists = Path(split_lists).expanduser() if split_lists else None
        if self.split_lists is not None and not self.split_lists.is_dir():
            raise ConfigError(f"invalid split_lists={split_lists!r}: must be a folder holding "
                              "LibMTL's <Domain>_<train|val|test>.txt lists")
        self.backbone, self.backbone_params = backbone_choice(backbone, backbone_params,
                                                              weights)
        self.image_size = check_count("image_size", image_size) or default_image_size(
            backbone, 64)
        self.hidden = check_count("hidden", hidden)
        self.architecture = architecture
        self.architecture_params = dict(architecture_params or {})
        if "weights" in self.backbone_params:  # every expert starts pre-trained, as LibMTL
            self.architecture_params.setdefault("expert_init", "copy")
        self.caps = split_caps(n_train, n_val, n_test)
        self._splits: Splits | None = None

    def _find(self, root: Path) -> tuple[Path, list[Path]]:
        lay = self.layout
        for base in [root / f for f in lay.folders] + [root]:
            found = [next((base / n for n in names if (base / n).is_dir()), None)
                     for _, names in lay.domains]
            if all(f is not None for f in found):
                return base, [f for f in found if f is not None]
        raise DataError(f"{root} does not hold the {self.name} images: expected "
                        f"{root}/{lay.describe()} or the domain folders directly under "
                        f"{root} (from {lay.source})")

    @property
    def tasks(self) -> list[Task]:
        return [Task(t, DomainClassification(self.layout.num_classes))
                for t, _ in self.layout.domains]

    def _domain_splits(self, k: int) -> list[tuple[list[Path], np.ndarray]]:
        lay = self.layout
        if self.split_lists is not None:
            return [read_split_list(self.split_lists / f"{lay.libmtl[k]}_{s}.txt", self.base,
                                    lay.num_classes, lay.libmtl[k], self.domain_folders[k])
                    for s in ("train", "val", "test")]
        folder = self.domain_folders[k] / lay.images if lay.images else self.domain_folders[k]
        classes, paths, labels = scan_domain(folder, lay.num_classes, lay.source)
        if k == 0:
            self._classes = classes
        elif classes != self._classes:
            odd = sorted(set(classes) ^ set(self._classes))[0]
            raise DataError(f"{folder}: its class folders differ from the first domain's "
                            f"(e.g. {odd!r}); every domain has the same {lay.num_classes}")
        rng = np.random.default_rng([self.data_seed, k])
        out = []
        for part, cap in zip(stratified_split(labels, self.fractions, rng), self.caps):
            part = first_n(rng.permutation(part), cap)  # caps keep every class likely
            out.append(([paths[i] for i in part], labels[part]))
        return out

    def splits(self) -> Splits:
        if self._splits is None:
            per_domain = [self._domain_splits(k) for k in range(len(self.layout.domains))]
            transform = ImageTransform(self.image_size, IMAGENET_MEAN, IMAGENET_STD)
            names = [t for t, _ in self.layout.domains]
            datasets = [DomainImages({t: per_domain[k][s] for k, t in enumerate(names)},
                                     transform, self.layout.source, cycle=s == 0)
                        for s in range(3)]
            self._splits = Splits(*datasets)
        return self._splits

    def build_model(self, tasks: list[str] | None = None) -> MultiTaskModel:
        encoder = build_encoder(self.backbone, self.backbone_params, {"in_channels": 3})
        features = encoder.out_features
        if self.hidden is not None:
            encoder = nn.Sequential(OrderedDict(
                backbone=encoder, hidden=hidden_layer(encoder.out_features, self.hidden)))
            features = self.hidden
        heads = {t.name: t.head.build(features) for t in self.tasks
                 if tasks is None or t.name in tasks}
        inner = apply_architecture(MultiTaskModel(encoder, heads), self.architecture,
                                   self.architecture_params,
                                   (3, self.image_size, self.image_size))
        return MultiInputModel(inner, {t: k for k, (t, _) in enumerate(self.layout.domains)})

    def describe(self) -> dict[str, object]:
        return {"source": str(self.base), "split": str(self.split_lists or
                                                      f"stratified 60/20/20, data_seed "
                                                      f"{self.data_seed}"),
                "image_size": self.image_size, "backbone": self.backbone,
                "hidden": self.hidden, "architecture": self.architecture,
                "caps": dict(zip(("n_train", "n_val", "n_test"), self.caps))}
