"""Training configuration: attrs classes, TOML loading, validation with one-line errors.

A TOML file holds the same keys as :class:`TrainConfig`, at top level or under ``[train]``;
plugin parameters go in sub-tables ``[aggregator_params]``, ``[mask_params]``,
``[benchmark_params]`` and ``[probe_params.<probe>]``. Command-line flags override the file.
``None`` for a protocol value (epochs, lr, batch size, optimizer, weight decay) means "the
benchmark's default".
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import attrs

from mtlkit.errors import ConfigError, invalid_value

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

OPTIMIZERS = ("sgd", "adam", "adamw")
JACOBIAN_MODES = ("loop", "batched", "gramian", "representation", "autogram")
NONFINITE_POLICIES = ("error", "skip")
DEVICES = ("cpu", "cuda", "auto")
#: where the sparse-training mask acts (docs/sparse-training.md): ``trainable`` = the aggregator
#: sees the per-task gradients of the trainable coordinates only (n = trainable count);
#: ``full`` = it sees all shared coordinates and its update is masked afterwards
MASK_POINTS = ("trainable", "full")
#: mixed precision: ``bf16`` autocasts to bfloat16 (CPU or GPU, no loss scaling needed);
#: ``fp16`` autocasts to float16 with a ``GradScaler`` (the engine unscales the Jacobian)
AMP_MODES = ("off", "bf16", "fp16")
#: ``None``: the benchmark's own step decay; ``constant``; ``cosine`` (per step, to 0 at the end)
LR_SCHEDULES = ("constant", "cosine")
LOGGERS = ("tensorboard", "wandb", "mlflow")


def _positive_int(field: str):
    def check(_inst: Any, _attr: Any, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise invalid_value(field, value, "must be an integer >= 1")
    return check


def _positive_float(field: str, *, allow_zero: bool = False):
    def check(_inst: Any, _attr: Any, value: Any) -> None:
        if value is None:
            return
        ok = _is_number(value)
        if not ok or value < 0 or (value == 0 and not allow_zero):
            bound = ">= 0" if allow_zero else "> 0"
            raise invalid_value(field, value, f"must be a finite number {bound}")
    return check


def _choice(field: str, choices: tuple[str, ...]):
    def check(_inst: Any, _attr: Any, value: Any) -> None:
        if value is not None and value not in choices:
            raise invalid_value(field, value, f"must be one of {', '.join(choices)}")
    return check


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value)


def _density(_inst: Any, _attr: Any, value: Any) -> None:
    if value is None:
        return
    ok = _is_number(value)
    if not ok or not 0 < value <= 1:
        raise invalid_value("density", value, "must be in (0, 1] (the trainable fraction)")


def _fraction(field: str):
    def check(_inst: Any, _attr: Any, value: Any) -> None:
        if not _is_number(value) or not 0 <= value <= 1:
            raise invalid_value(field, value, "must be a number in [0, 1]")
    return check


def _task_list(_inst: Any, _attr: Any, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, list) or not value or \
            not all(isinstance(t, str) and t for t in value):
        raise invalid_value("tasks", value, "must be a non-empty list of task names")


_DICT_FIELD: Any = {"factory": dict, "converter": dict}


@attrs.define(kw_only=True)
class TrainConfig:
    """Everything one training run needs; validated on construction."""

    benchmark: str = "multi_mnist"
    benchmark_params: dict[str, Any] = attrs.field(**_DICT_FIELD)
    aggregator: str = "mean"
    aggregator_params: dict[str, Any] = attrs.field(**_DICT_FIELD)
    mask: str = "dense"
    mask_params: dict[str, Any] = attrs.field(**_DICT_FIELD)
    density: float | None = attrs.field(default=None, validator=_density)
    k: int | None = attrs.field(default=None, validator=_positive_int("k"))
    mask_point: str = attrs.field(default="trainable", validator=_choice("mask_point",
                                                                         MASK_POINTS))
    probes: list[str] = attrs.field(factory=lambda: ["cosine"], converter=list)
    probe_params: dict[str, dict[str, Any]] = attrs.field(**_DICT_FIELD)
    probe_every: int = attrs.field(default=1, validator=_positive_int("probe_every"))
    tasks: list[str] | None = attrs.field(default=None, validator=_task_list)
    epochs: int | None = attrs.field(default=None, validator=_positive_int("epochs"))
    max_steps: int | None = attrs.field(default=None, validator=_positive_int("max_steps"))
    batch_size: int | None = attrs.field(default=None, validator=_positive_int("batch_size"))
    lr: float | None = attrs.field(default=None, validator=_positive_float("lr"))
    optimizer: str | None = attrs.field(default=None, validator=_choice("optimizer", OPTIMIZERS))
    momentum: float = attrs.field(default=0.0, validator=_positive_float("momentum",
                                                                          allow_zero=True))
    weight_decay: float | None = attrs.field(
        default=None, validator=_positive_float("weight_decay", allow_zero=True))
    seed: int = 0
    data_root: str | None = None
    jacobian: str = attrs.field(default="loop", validator=_choice("jacobian", JACOBIAN_MODES))
    nonfinite: str = attrs.field(default="error",
                                 validator=_choice("nonfinite", NONFINITE_POLICIES))
    device: str = attrs.field(default="cpu", validator=_choice("device", DEVICES))
    threads: int | None = attrs.field(default=None, validator=_positive_int("threads"))
    workers: int = 0
    eval_every: int = attrs.field(default=1, validator=_positive_int("eval_every"))
    checkpoint: bool = True
    #: JSON file ``{task: {metric: value}}`` of single-task results for delta_m
    baselines: str | None = None
    #: a pre-trained encoder ``state_dict`` (.pt/.pth) loaded into the model's shared encoder
    #: (any backbone) before training: mtlkit.pretrained.load_backbone_weights
    backbone_weights: str | None = None
    amp: str = attrs.field(default="off", validator=_choice("amp", AMP_MODES))
    #: each batch is processed in this many equal micro-batches (same update, less memory)
    accumulation_steps: int = attrs.field(default=1,
                                          validator=_positive_int("accumulation_steps"))
    #: clip the global gradient norm (shared update and heads together) to this value
    grad_clip: float | None = attrs.field(default=None, validator=_positive_float("grad_clip"))
    lr_schedule: str | None = attrs.field(default=None,
                                          validator=_choice("lr_schedule", LR_SCHEDULES))
    #: linear learning-rate warm-up over the first N optimizer steps
    warmup_steps: int = attrs.field(default=0, validator=_positive_float("warmup_steps",
                                                                          allow_zero=True))
    #: experiment loggers: any of tensorboard, wandb (offline), mlflow (local SQLite store)
    log: list[str] = attrs.field(factory=list, converter=list)
    #: without a terminal: a progress line every N steps (and one per epoch)
    log_every: int = attrs.field(default=100, validator=_positive_int("log_every"))
    #: with nonfinite='skip': fail the run (exit code 4) when more than this share of an
    #: epoch's steps had to be skipped (a run that mostly skips is not training)
    max_skipped_fraction: float = attrs.field(default=0.1, validator=_fraction(
        "max_skipped_fraction"))

    def __attrs_post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise invalid_value("seed", self.seed, "must be an integer >= 0")
        if not isinstance(self.workers, int) or self.workers < 0:
            raise invalid_value("workers", self.workers, "must be an integer >= 0")
        if isinstance(self.warmup_steps, (float, bool)):
            raise invalid_value("warmup_steps", self.warmup_steps, "must be an integer >= 0")
        for name in self.log:
            if name not in LOGGERS:
                raise invalid_value("log", name, f"must be among {', '.join(LOGGERS)}")
        if self.density is not None and self.k is not None:
            raise ConfigError("give either density or k, not both")
        if self.data_root is not None:
            root = Path(self.data_root).expanduser()
            if not root.is_dir():
                raise invalid_value("data_root", self.data_root,
                                    "must be an existing directory")

    def load_baselines(self) -> dict[str, dict[str, float]] | None:
        if self.baselines is None:
            return None
        import json

        path = Path(self.baselines).expanduser()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise invalid_value("baselines", self.baselines, "must be an existing JSON file")\
                from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"malformed baselines file {path}: {exc}") from None
        ok = isinstance(data, dict) and all(
            isinstance(m, dict) and all(isinstance(v, (int, float)) for v in m.values())
            for m in data.values())
        if not ok:
            raise ConfigError(f"malformed baselines file {path}: expected "
                              "{task: {metric: number}}")
        return data

    def mask_kwargs(self) -> dict[str, Any]:
        params = dict(self.mask_params)
        if self.density is not None:
            params["density"] = self.density
        if self.k is not None:
            params["k"] = self.k
        return params

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


FIELDS = tuple(a.name for a in attrs.fields(TrainConfig))
#: keys ``--resume`` lets change (they do not change what the checkpoint's state means): extend
#: a run (epochs, max_steps), evaluation/logging cadence, resources, the skip policy's bound,
#: and the Δm baselines (evaluation only). Any other difference is refused.
RESUMABLE_KEYS = ("epochs", "max_steps", "eval_every", "threads", "workers", "device",
                  "checkpoint", "baselines", "log", "log_every", "max_skipped_fraction")


def read_toml_file(path: str | Path, field: str) -> dict[str, Any]:
    """Parse a TOML file; errors name ``field``, the file and the problem (line and column)."""
    p = Path(path)
    if not p.is_file():
        raise invalid_value(field, str(path), "must be an existing TOML file")
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"malformed TOML in {path}: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"malformed TOML in {path}: not UTF-8 text") from None


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a config file: its keys at top level or under ``[train]``."""
    data = read_toml_file(path, "config")
    if "train" in data:
        if set(data) - {"train"}:
            extra = sorted(set(data) - {"train"})
            raise ConfigError(f"unknown top-level key {extra[0]!r} in {path}; put settings "
                              "under [train]")
        data = data["train"]
    return data


def make_config(values: dict[str, Any], source: str = "config") -> TrainConfig:
    """Build a validated :class:`TrainConfig`; unknown keys are an error naming the key."""
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} in {source}; valid keys: "
                          f"{', '.join(FIELDS)}")
    try:
        return TrainConfig(**values)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid {source}: {exc}") from None
