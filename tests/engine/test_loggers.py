"""W&B (offline) and MLflow (a local SQLite store) receive the Trainer's records; nothing leaves
the machine. Each test skips with a reason when its extra is absent."""

from __future__ import annotations

import pytest

from mtlkit.config import TrainConfig
from mtlkit.errors import ConfigError
from mtlkit.loggers import ExperimentLogger, as_logger
from mtlkit.trainer import Trainer


def config(**kw) -> TrainConfig:
    return TrainConfig(benchmark_params={"n_train": 128, "n_val": 64, "n_test": 64},
                       batch_size=64, max_steps=2, epochs=1, seed=0, log_every=1, **kw)


class Memory(ExperimentLogger):
    def __init__(self) -> None:
        self.records: list[tuple[int, dict]] = []
        self.closed = False

    def log(self, record, step):
        self.records.append((step, dict(record)))

    def close(self):
        self.closed = True


def test_a_callers_logger_gets_steps_and_epochs():
    memory = Memory()
    Trainer(config(aggregator="mgda"), None, loggers=[memory], progress=False).fit()
    keys = set().union(*(r for _, r in memory.records))
    assert {"train/loss/left", "probe/cosine.incidence", "weights/right",
            "test/left/accuracy"} <= keys
    assert memory.closed


def test_unknown_logger_object_is_refused():
    with pytest.raises(ConfigError, match="invalid logger"):
        as_logger(object())


def test_wandb_offline_run(tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="the wandb extra is not installed")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    Trainer(config(log=["wandb"]), tmp_path / "run", progress=False).fit()
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert runs and list(runs[0].glob("*.wandb"))


def test_mlflow_file_store(tmp_path):
    mlflow = pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    Trainer(config(log=["mlflow"]), tmp_path / "run", progress=False).fit()
    db = (tmp_path / "run" / "mlruns" / "mlflow.db").resolve()
    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{db}")
    runs = client.search_runs(experiment_ids=["0"])
    assert len(runs) == 1
    history = client.get_metric_history(runs[0].info.run_id, "train/loss/left")
    assert [m.step for m in history] == [0, 1]
