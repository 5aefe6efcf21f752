"""Benchmarks: datasets with their splits, tasks, default model, training defaults, baselines.

A split is any ``torch.utils.data.Dataset`` yielding ``(x, {task: target})``. In-memory splits
use :class:`InMemoryDataset`, which the trainer batches by slicing (no per-item Python work);
disk-backed splits go through a ``DataLoader``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import attrs
import torch
from torch.utils.data import Dataset

from mtlkit.models import MultiTaskModel
from mtlkit.tasks import TaskHead


@attrs.frozen
class Task:
    name: str
    head: TaskHead


@attrs.frozen
class Splits:
    train: Dataset
    val: Dataset
    test: Dataset


@attrs.frozen
class TrainingDefaults:
    """A benchmark's protocol defaults; CLI flags and config files override them."""

    optimizer: str = "adam"
    lr: float = 1e-3
    batch_size: int = 256
    epochs: int = 10
    weight_decay: float = 0.0
    #: evaluation batch size; ``None``: ``max(batch_size, 256)``. Dense benchmarks set it to
    #: the protocol's test batch size (full-resolution SegNet activations of 256 images do not
    #: fit in memory, and the MTAN protocol averages depth/normal errors per test batch).
    eval_batch_size: int | None = None
    #: step decay: the learning rate is multiplied by ``lr_gamma`` at each epoch listed here
    #: (the MTAN protocol's ``StepLR(step_size=100, gamma=0.5)`` is ``(100,)``, ``0.5``)
    lr_milestones: tuple[int, ...] = ()
    lr_gamma: float = 0.1


class InMemoryDataset(Dataset):
    """Tensors held in memory: ``x[i]`` and ``{task: y[i]}``."""

    def __init__(self, x: torch.Tensor, targets: Mapping[str, torch.Tensor]) -> None:
        for task, y in targets.items():
            if len(y) != len(x):
                raise ValueError(f"task {task!r} has {len(y)} targets for {len(x)} inputs")
        self.x = x
        self.targets = dict(targets)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.x[i], {t: y[i] for t, y in self.targets.items()}

    def batches(
        self, batch_size: int, *, shuffle: bool, generator: torch.Generator | None = None,
        drop_last: bool = False,
    ) -> Iterator[tuple[torch.Tensor, dict[str, torch.Tensor]]]:
        n = len(self.x)
        order = torch.randperm(n, generator=generator) if shuffle else None
        stop = n - n % batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            if order is None:
                sl = slice(start, min(start + batch_size, n))
                yield self.x[sl], {t: y[sl] for t, y in self.targets.items()}
            else:
                idx = order[start:start + batch_size]
                yield self.x[idx], {t: y[idx] for t, y in self.targets.items()}


class Benchmark:
    """Base class of benchmarks.

    Subclasses provide :attr:`tasks`, :meth:`splits` and :meth:`build_model`; optionally
    :attr:`stl_baselines` (single-task reference metrics on the test split, for Δm) with
    :attr:`baseline_source` saying where they come from.
    """

    name: ClassVar[str] = ""
    defaults: ClassVar[TrainingDefaults] = TrainingDefaults()

    @property
    def tasks(self) -> list[Task]:
        raise NotImplementedError

    def splits(self) -> Splits:
        raise NotImplementedError

    def build_model(self, tasks: list[str] | None = None) -> MultiTaskModel:
        """The benchmark's default architecture, with heads for ``tasks`` (default: all)."""
        raise NotImplementedError

    @property
    def stl_baselines(self) -> dict[str, dict[str, float]] | None:
        return None

    baseline_source: ClassVar[str] = ""

    def describe(self) -> dict[str, Any]:
        return {}
