"""Experiment loggers: TensorBoard event files, Weights & Biases and MLflow runs.

The Trainer hands every logger the same flat ``{name: value}`` records: per logged step the
task losses (``train/loss/<task>``), the probes' values (``probe/<probe>.<metric>``, e.g. the
conflict incidence) and the task weights (``weights/<task>``) when the method has them; per
epoch every evaluation metric (``<split>/<task>/<metric>``) and the probes' summaries.

``config.log = ["tensorboard", "wandb", "mlflow"]`` (or ``--log``) creates them inside the run
directory: TensorBoard writes ``DIR/tensorboard/``, W&B runs offline into ``DIR/wandb/``
(``wandb sync`` uploads later), MLflow a SQLite store ``DIR/mlruns/mlflow.db``. Nothing leaves
the machine. A caller may instead pass its own objects: an :class:`ExperimentLogger`, a W&B run
(``wandb.init(...)``) or an MLflow active run (``mlflow.start_run()``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mtlkit.errors import ConfigError


class ExperimentLogger:
    """Receives flat numeric records; subclasses send them somewhere."""

    def log(self, record: Mapping[str, float], step: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Flush and release files (called once at the end of training)."""


def _finite(record: Mapping[str, Any]) -> dict[str, float]:
    """Numbers only (strings, None and NaN are not plotted by any of the three backends)."""
    return {k: float(v) for k, v in record.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


class TensorBoardLogger(ExperimentLogger):
    """Event files under ``log_dir`` (``tensorboard --logdir DIR/tensorboard``)."""

    def __init__(self, log_dir: str | Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("log='tensorboard' needs the tensorboard package: "
                              "pip install 'mtlkit[tensorboard]'") from None
        self.writer = SummaryWriter(log_dir=str(log_dir))

    def log(self, record: Mapping[str, float], step: int) -> None:
        for key, value in _finite(record).items():
            self.writer.add_scalar(key, value, global_step=step)

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()


class WandbLogger(ExperimentLogger):
    """A W&B run: the caller's, or a new offline one in ``directory``."""

    def __init__(self, run: Any = None, *, directory: str | Path | None = None,
                 config: Mapping[str, Any] | None = None) -> None:
        self._owned = run is None
        if run is None:
            try:
                import wandb
            except ImportError:
                raise ConfigError("log='wandb' needs the wandb package: "
                                  "pip install 'mtlkit[wandb]'") from None
            run = wandb.init(mode="offline", dir=str(directory) if directory else None,
                             project="mtlkit", config=dict(config or {}))
        self.run = run

    def log(self, record: Mapping[str, float], step: int) -> None:
        self.run.log(_finite(record), step=step)

    def close(self) -> None:
        if self._owned:
            self.run.finish()


class MLflowLogger(ExperimentLogger):
    """An MLflow run: the active one, or a new one in the file store ``directory``."""

    def __init__(self, run: Any = None, *, directory: str | Path | None = None,
                 params: Mapping[str, Any] | None = None) -> None:
        try:
            import mlflow
        except ImportError:
            raise ConfigError("log='mlflow' needs the mlflow package: "
                              "pip install 'mtlkit[mlflow]'") from None
        self._mlflow = mlflow
        self._owned = run is None
        if run is None:
            if directory is not None:
                # a local SQLite store (MLflow 3 keeps the plain file store in maintenance)
                Path(directory).mkdir(parents=True, exist_ok=True)
                db = (Path(directory) / "mlflow.db").resolve()
                mlflow.set_tracking_uri(f"sqlite:///{db}")
            run = mlflow.start_run()
            if params:
                mlflow.log_params({k: str(v)[:250] for k, v in params.items()})
        self.run = run

    def log(self, record: Mapping[str, float], step: int) -> None:
        # MLflow metric names may not contain some characters; '/' and '.' are allowed
        self._mlflow.log_metrics(_finite(record), step=step)

    def close(self) -> None:
        if self._owned:
            self._mlflow.end_run()


def make_loggers(names: list[str], out: Path | None,
                 config: Mapping[str, Any]) -> list[ExperimentLogger]:
    """The loggers a config asks for, writing inside the run directory ``out``."""
    if names and out is None:
        raise ConfigError(f"log={names}: loggers write into the run directory; give --out")
    loggers: list[ExperimentLogger] = []
    for name in names:
        assert out is not None
        if name == "tensorboard":
            loggers.append(TensorBoardLogger(out / "tensorboard"))
        elif name == "wandb":
            loggers.append(WandbLogger(directory=out, config=config))
        elif name == "mlflow":
            loggers.append(MLflowLogger(directory=out / "mlruns", params=config))
    return loggers


def as_logger(obj: Any) -> ExperimentLogger:
    """A caller's logger object: an :class:`ExperimentLogger`, a W&B run or an MLflow run."""
    if isinstance(obj, ExperimentLogger):
        return obj
    kind = type(obj).__module__.split(".")[0]
    if kind == "wandb":
        return WandbLogger(obj)
    if kind == "mlflow":
        return MLflowLogger(obj)
    raise ConfigError(f"invalid logger {type(obj).__name__}: pass an "
                      "mtlkit.loggers.ExperimentLogger, a wandb run or an mlflow run")
