"""A researcher's own model, losses, metrics and DataLoaders through the :class:`Trainer`.

::

    results = mtlkit.fit(model, shared=model.encoder,
                         losses={"left": F.cross_entropy, "right": F.cross_entropy},
                         metrics={"left": accuracy, "right": accuracy},
                         train=train_loader, val=val_loader, test=test_loader,
                         aggregator="upgrad", mask="psn", density=0.3, epochs=5,
                         out="runs/mine")

writes the same ``results.json``, ``epochs.csv``/``steps.csv``, checkpoints and probe values as
a registered benchmark. What the Trainer needs is adapted here: the model's ``forward(x)`` must
return ``{task: output}``; ``shared`` names its shared part (a submodule, or parameters), and
every other parameter a loss reaches is found from the autograd graph; each loader yields
``(x, {task: target})``. A metric is a function ``(output, target) -> {name: value}`` (or a
number), averaged over a split weighted by batch size, or an object with ``update``/``compute``/
``reset`` (torchmetrics-style).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn
from torch.utils.data import DataLoader

from mtlkit.benchmarks import Benchmark, Splits, Task, TrainingDefaults
from mtlkit.errors import ConfigError
from mtlkit.tasks import MetricAccumulator, TaskHead


@runtime_checkable
class StatefulMetric(Protocol):
    """A metric object that accumulates a split itself (torchmetrics-style)."""

    def update(self, output: torch.Tensor, target: torch.Tensor) -> Any: ...

    def compute(self) -> Any: ...

    def reset(self) -> Any: ...


class OwnModel(nn.Module):
    """A user's model as the Trainer sees it: ``{task: output}`` and its shared parameters.

    Task-specific parameters are not declared: the engine finds them from each loss's graph.
    """

    def __init__(self, model: nn.Module, shared: nn.Module | Iterable[nn.Parameter]) -> None:
        super().__init__()
        self.model = model
        params = shared.parameters() if isinstance(shared, nn.Module) else shared
        ids = {id(p) for p in params}
        self._shared = [(f"model.{n}", p) for n, p in model.named_parameters()
                        if id(p) in ids and p.requires_grad]
        if not self._shared:
            raise ConfigError("shared= names no trainable parameter of the model (pass the "
                              "shared submodule, e.g. shared=model.encoder)")

    def forward(self, x: Any) -> dict[str, torch.Tensor]:
        out = self.model(x)
        if not isinstance(out, Mapping):
            raise ConfigError(f"the model's forward returned {type(out).__name__}; it must "
                              "return {task: output} (one entry per task)")
        return dict(out)

    def shared_named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return list(self._shared)


class _FunctionMetrics(MetricAccumulator):
    def __init__(self, fn: Callable[..., Any] | StatefulMetric | None,
                 loss: Callable[..., torch.Tensor]) -> None:
        self.fn, self.loss = fn, loss
        self.sums: dict[str, float] = {}
        self.count = 0

    def update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        if isinstance(self.fn, StatefulMetric):
            self.fn.update(output, target)
            return
        n = len(target) if isinstance(target, torch.Tensor) and target.ndim > 0 else 1
        values = ({"loss": float(self.loss(output, target))} if self.fn is None
                  else _as_dict(self.fn(output, target)))
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v * n
        self.count += n

    def compute(self) -> dict[str, float]:
        if isinstance(self.fn, StatefulMetric):
            values = _as_dict(self.fn.compute())
            self.fn.reset()  # the next evaluation pass starts empty
            return values
        return {k: v / max(self.count, 1) for k, v in self.sums.items()}


def _as_dict(value: Any) -> dict[str, float]:
    if isinstance(value, Mapping):
        return {str(k): float(v) for k, v in value.items()}
    return {"metric": float(value)}


class FunctionHead(TaskHead):
    """A task given as a loss function and an optional metric (no module of its own: the
    user's model already has the head)."""

    def __init__(self, loss: Callable[..., torch.Tensor],
                 metric: Callable[..., Any] | StatefulMetric | None = None,
                 higher_is_better: Mapping[str, bool] | bool | None = None) -> None:
        if not callable(loss):
            raise ConfigError(f"invalid loss {loss!r}: a function (output, target) -> scalar")
        self._loss, self._metric = loss, metric
        if isinstance(higher_is_better, bool):
            higher_is_better = {"metric": higher_is_better}
        # the metric "loss" (no metric given) is lower-is-better. Per instance here, where a
        # bundled head declares them on its class: each user task brings its own metrics.
        self.higher_is_better = {  # type: ignore[misc]
            "loss": False, **dict(higher_is_better or {})}
        self.primary_metric = "loss" if metric is None else next(  # type: ignore[misc]
            iter(self.higher_is_better.keys() - {"loss"}), "metric")

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self._loss(output, target)

    def metrics(self) -> MetricAccumulator:
        return _FunctionMetrics(self._metric, self._loss)


class OwnBenchmark(Benchmark):
    """The user's objects behind the benchmark interface the Trainer reads."""

    name = "own"

    def __init__(self, model: OwnModel, heads: Mapping[str, TaskHead], train: Any,
                 val: Any = None, test: Any = None,
                 defaults: TrainingDefaults | None = None) -> None:
        if val is None and test is None:
            raise ConfigError("give val= or test= (a DataLoader): results are evaluated on them")
        self.model = model
        self.heads = dict(heads)
        self._splits = Splits(train=train, val=val if val is not None else test,
                              test=test if test is not None else val)
        # per instance (a bundled benchmark's are a class constant): the batch size is the loader's
        self.defaults = defaults or TrainingDefaults(  # type: ignore[misc]
            optimizer="adam", lr=1e-3, epochs=1, batch_size=_batch_size(train))

    @property
    def tasks(self) -> list[Task]:
        return [Task(name, head) for name, head in self.heads.items()]

    def splits(self) -> Splits:
        return self._splits

    # OwnModel has what the Trainer reads of a MultiTaskModel (forward -> {task: output},
    # shared_named_parameters) without subclassing its encoder/heads layout
    def build_model(self, tasks: list[str] | None = None) -> OwnModel:  # type: ignore[override]
        return self.model


def _batch_size(loader: Any) -> int:
    """A DataLoader's batch size (reported in results' protocol); 1 when it has none."""
    size = loader.batch_size if isinstance(loader, DataLoader) else None
    return size if isinstance(size, int) and size > 0 else 1


def fit(model: nn.Module, *, shared: nn.Module | Iterable[nn.Parameter],
        losses: Mapping[str, Callable[..., torch.Tensor]], train: Any, val: Any = None,
        test: Any = None, metrics: Mapping[str, Any] | None = None,
        higher_is_better: Mapping[str, Mapping[str, bool] | bool] | None = None,
        out: str | Path | None = None, loggers: Iterable[Any] = (),
        progress: bool | None = None, **config: Any) -> dict[str, Any]:
    """Train a user's model with any aggregator, mask and probes; returns ``results.json``.

    ``config`` holds :class:`~mtlkit.config.TrainConfig` keys (``aggregator``, ``mask``,
    ``density``, ``probes``, ``epochs``, ``lr``, ``optimizer``, ``amp``, ``grad_clip``, ...).
    """
    from mtlkit.config import make_config
    from mtlkit.trainer import Trainer

    if not losses:
        raise ConfigError("losses= must map each task to its loss function")
    metrics = dict(metrics or {})
    directions = dict(higher_is_better or {})
    unknown = sorted((set(metrics) | set(directions)) - set(losses))
    if unknown:
        raise ConfigError(f"metrics/higher_is_better name task(s) {', '.join(unknown)} that "
                          f"losses= does not have ({', '.join(losses)})")
    heads = {t: FunctionHead(fn, metrics.get(t), directions.get(t)) for t, fn in losses.items()}
    bench = OwnBenchmark(OwnModel(model, shared), heads, train, val, test)
    cfg = make_config({"benchmark": OwnBenchmark.name, **config}, source="fit()")
    return Trainer(cfg, out, benchmark=bench, loggers=loggers, progress=progress).fit()
