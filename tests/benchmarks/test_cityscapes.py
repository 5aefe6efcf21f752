"""CityScapes end to end on tiny folders in the MTAN .npy layout (label_7, depth)."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures.dense import write_cityscapes

from mtlkit import get_benchmark
from mtlkit.config import TrainConfig
from mtlkit.errors import ConfigError, DataError
from mtlkit.trainer import Trainer


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_cityscapes(tmp_path_factory.mktemp("city"), n_train=5, n_val=2, size=(8, 16))


@pytest.mark.parametrize("backbone", ["mtan", "segnet"])
def test_trains_end_to_end_and_reports_delta_m(root, tmp_path, backbone):
    cfg = TrainConfig(benchmark="cityscapes", data_root=str(root), max_steps=2, threads=1,
                      benchmark_params={"width": 4, "stages": 2, "backbone": backbone},
                      checkpoint=False)
    results = Trainer(cfg, tmp_path, progress=False).fit()
    assert results["steps"] == 2
    assert {t: set(m) for t, m in results["tasks"].items()} == {
        "segmentation": {"miou", "pixel_acc"}, "depth": {"abs_err", "rel_err"}}
    assert np.isfinite(results["delta_m"])


def test_defaults_baselines_and_samples(root):
    bench = get_benchmark("cityscapes", data_root=str(root))
    d = bench.defaults
    assert (d.optimizer, d.lr, d.batch_size, d.epochs, d.eval_batch_size) == (
        "adam", 1e-4, 8, 200, 8)
    assert bench.stl_baselines == {"segmentation": {"miou": 0.7401, "pixel_acc": 0.9316},
                                   "depth": {"abs_err": 0.0125, "rel_err": 27.77}}
    assert "cityscapes/plot.py" in bench.baseline_source
    x, y = bench.splits().test[1]
    assert x.shape == (3, 8, 16) and set(y) == {"segmentation", "depth"}
    assert get_benchmark("cityscapes", data_root=str(root), baselines="st"
                         ).stl_baselines["depth"]["rel_err"] == 35.68


def test_19_classes_read_label_19_without_baselines(tmp_path):
    root = write_cityscapes(tmp_path, n_train=2, n_val=1, size=(4, 8), classes=19)
    bench = get_benchmark("cityscapes", data_root=str(root), classes=19)
    assert bench.stl_baselines is None
    assert bench.tasks[0].head.num_classes == 19
    assert len(bench.splits().train) == 1
    with pytest.raises(DataError, match="label_7"):
        get_benchmark("cityscapes", data_root=str(root)).splits()


def test_tiny_images_reduce_stages_with_a_warning(root):
    bench = get_benchmark("cityscapes", data_root=str(root), width=2)
    with pytest.warns(UserWarning, match="stages=4"):
        model = bench.build_model()
    assert len(model.encoder.segnet.filters) == 4


@pytest.mark.parametrize("params", [{"classes": 8}, {"backbone": "resnet"},
                                    {"val_fraction": 1.0}, {"baselines": "nash"},
                                    {"image_size": [4]}, {"metric_average": "median"}])
def test_bad_parameters(root, params):
    with pytest.raises(ConfigError):
        get_benchmark("cityscapes", data_root=str(root), **params)
