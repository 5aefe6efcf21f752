"""NYUv2 end to end on tiny folders in the MTAN .npy layout."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from fixtures.dense import write_nyuv2

from mtlkit import get_benchmark
from mtlkit.cli import main
from mtlkit.config import TrainConfig
from mtlkit.errors import DataError
from mtlkit.trainer import Trainer

TINY = {"width": 4, "stages": 2}
METRICS = {"segmentation": {"miou", "pixel_acc"}, "depth": {"abs_err", "rel_err"},
           "normal": {"mean_angle", "median_angle", "within_11_25", "within_22_5",
                      "within_30"}}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_nyuv2(tmp_path_factory.mktemp("nyuv2"), n_train=5, n_val=3, size=(12, 16))


@pytest.mark.parametrize("backbone", ["mtan", "segnet"])
def test_trains_end_to_end_and_reports_delta_m(root, tmp_path, backbone):
    cfg = TrainConfig(benchmark="nyuv2", data_root=str(root), max_steps=3, threads=1,
                      benchmark_params={**TINY, "backbone": backbone}, checkpoint=False)
    results = Trainer(cfg, tmp_path, progress=False).fit()
    assert results["steps"] == 3
    assert {t: set(m) for t, m in results["tasks"].items()} == METRICS
    assert all(np.isfinite(v) for m in results["tasks"].values() for v in m.values())
    assert results["delta_m"] is not None and np.isfinite(results["delta_m"])
    assert "CAGrad" in results["baseline_source"]
    assert json.loads((tmp_path / "results.json").read_text())["benchmark"] == "nyuv2"


def test_cli_one_flag_run(root, tmp_path, capsys):
    rc = main(["train", "--benchmark", "nyuv2", "--data-root", str(root), "--max-steps", "1",
               "--threads", "1", "--quiet", "--benchmark-param", "width=2",
               "--benchmark-param", "stages=1", "--out", str(tmp_path)])
    assert rc == 0
    assert (tmp_path / "results.json").is_file()


def test_cli_missing_data_is_one_line_exit_2(tmp_path, capsys):
    rc = main(["train", "--benchmark", "nyuv2", "--data-root", str(tmp_path), "--max-steps",
               "1", "--quiet", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert rc == 3  # bad data: mtlkit.errors.EXIT_CODES
    assert len(err.splitlines()) == 1
    assert str(tmp_path / "train") in err and "dropbox" in err


def test_splits_samples_and_protocol_defaults(root):
    bench = get_benchmark("nyuv2", data_root=str(root), augment=False)
    splits = bench.splits()
    assert (len(splits.train), len(splits.val), len(splits.test)) == (4, 1, 3)
    x, y = splits.train[0]
    assert x.shape == (3, 12, 16) and x.dtype == torch.float32
    assert y["segmentation"].shape == (12, 16) and y["segmentation"].dtype == torch.int64
    assert y["depth"].shape == (1, 12, 16) and y["normal"].shape == (3, 12, 16)
    label = np.load(root / "train" / "label" / f"{splits.train.indices[0]}.npy")
    assert torch.equal(y["segmentation"], torch.from_numpy(label).long())
    d = bench.defaults
    assert (d.optimizer, d.lr, d.batch_size, d.epochs, d.eval_batch_size) == (
        "adam", 1e-4, 2, 200, 2)
    assert bench.stl_baselines["normal"]["median_angle"] == 19.21
    assert get_benchmark("nyuv2", data_root=str(root), baselines="recon"
                         ).stl_baselines["segmentation"]["miou"] == 0.3867


def test_protocol_halves_the_learning_rate_at_epoch_100(root, tmp_path):
    cfg = TrainConfig(benchmark="nyuv2", data_root=str(root), benchmark_params=TINY,
                      threads=1, checkpoint=False)
    trainer = Trainer(cfg, tmp_path, progress=False)
    for epoch, lr in [(0, 1e-4), (99, 1e-4), (100, 5e-5), (199, 5e-5)]:
        trainer.epoch = epoch
        trainer._set_epoch_lr()
        assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(lr)


def test_validation_split_is_held_out_from_train_and_fixed_by_data_seed(root):
    a = get_benchmark("nyuv2", data_root=str(root), seed=1).splits()
    b = get_benchmark("nyuv2", data_root=str(root), seed=2).splits()
    assert a.val.indices == b.val.indices
    assert set(a.val.indices).isdisjoint(a.train.indices)
    assert sorted(a.val.indices + a.train.indices) == list(range(5))
    assert a.val.split_dir.name == "train" and a.test.split_dir.name == "val"
    paper = get_benchmark("nyuv2", data_root=str(root), val_fraction=0).splits()
    assert len(paper.train) == 5 and paper.val is paper.test


def test_a_parent_holding_nyuv2_is_accepted(tmp_path):
    write_nyuv2(tmp_path / "nyuv2", n_train=2, n_val=1, size=(4, 4))
    bench = get_benchmark("nyuv2", data_root=str(tmp_path))
    assert bench.root == tmp_path / "nyuv2"
    assert len(bench.splits().test) == 1


def test_image_size_resizes_every_target(root):
    x, y = get_benchmark("nyuv2", data_root=str(root), image_size=[6, 8]).splits().test[0]
    assert x.shape == (3, 6, 8) and y["segmentation"].shape == (6, 8)
    assert y["normal"].shape == (3, 6, 8)


def test_no_data_root_names_the_source():
    with pytest.raises(DataError, match=r"data-root.*dropbox"):
        get_benchmark("nyuv2")
