"""Multi-MNIST from real offline digits and from MNIST IDX files."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch
from mtlkit_plugins.benchmarks._digits import bundled_mnist
from mtlkit_plugins.benchmarks._overlay import overlay_pairs

import mtlkit
from mtlkit.errors import DataError

SMALL = {"n_train": 300, "n_val": 100, "n_test": 100}


def write_idx(path, array, dtype_code=0x08):
    header = bytes([0, 0, dtype_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


def make_mnist_root(root, n_train=120, n_test=40, gz=True, sub=""):
    rng = np.random.default_rng(0)
    folder = root / sub if sub else root
    folder.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte{ext}",
                  rng.integers(0, 256, (n, 28, 28)))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{ext}", np.arange(n) % 10)
    return root


def test_bundled_digits_are_real_mnist():
    images, labels = bundled_mnist()
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [500] * 10


def test_splits_shapes_and_tasks():
    bench = mtlkit.get_benchmark("multi_mnist", **SMALL)
    assert [t.name for t in bench.tasks] == ["left", "right"]
    s = bench.splits()
    assert (len(s.train), len(s.val), len(s.test)) == (300, 100, 100)
    assert s.train.x.shape == (300, 1, 28, 28)
    assert float(s.train.x.min()) >= 0 and float(s.train.x.max()) <= 1
    for y in s.train.targets.values():
        assert int(y.min()) >= 0 and int(y.max()) <= 9


def test_source_digits_disjoint_across_splits():
    bench = mtlkit.get_benchmark("multi_mnist", **SMALL)
    pools = bench._pools()
    keys = [{img.tobytes() for img in images} for images, _ in pools]
    assert not keys[0] & keys[1] and not keys[0] & keys[2] and not keys[1] & keys[2]
    assert [len(images) for images, _ in pools] == [3500, 500, 1000]


def test_deterministic_by_data_seed_not_training_seed():
    a = mtlkit.get_benchmark("multi_mnist", seed=0, **SMALL).splits()
    b = mtlkit.get_benchmark("multi_mnist", seed=7, **SMALL).splits()
    c = mtlkit.get_benchmark("multi_mnist", data_seed=1, **SMALL).splits()
    assert torch.equal(a.test.x, b.test.x)
    assert torch.equal(a.train.targets["left"], b.train.targets["left"])
    assert not torch.equal(a.train.x, c.train.x)


def test_overlay_places_digits_top_left_and_bottom_right():
    images = np.zeros((2, 28, 28), dtype=np.uint8)
    images[0, :4, :4] = 255  # marks the top-left corner of digit 0
    images[1, -4:, -4:] = 255  # marks the bottom-right corner of digit 1
    labels = np.array([0, 1])
    rng = np.random.default_rng(0)
    x, left, right = overlay_pairs(images, labels, labels, 8, rng, fit="crop")
    for i in range(8):
        if left[i] == 0 and right[i] == 1:
            assert float(x[i, 0, :4, :4].sum()) == 0.0  # cropped away (offset 4)
            assert float(x[i, 0, -1, -1]) == 0.0
    x, left, right = overlay_pairs(images, labels, labels, 8, rng, fit="resize")
    assert x.shape == (8, 1, 28, 28)
    assert bool((left != right).all())  # two different source digits
    sel = (left == 0) & (right == 1)
    assert float(x[sel][:, 0, :2, :2].mean()) > 0.5 and float(x[sel][:, 0, -2:, -2:].mean()) > 0.5


@pytest.mark.parametrize(("gz", "sub"), [(True, ""), (False, "raw")])
def test_reads_idx_files_from_data_root(tmp_path, gz, sub):
    root = make_mnist_root(tmp_path, gz=gz, sub=sub)
    bench = mtlkit.get_benchmark("multi_mnist", data_root=str(root), **SMALL)
    s = bench.splits()
    assert len(s.train) == 300
    pools = bench._pools()
    assert len(pools[2][0]) == 40 and len(pools[0][0]) + len(pools[1][0]) == 120


def test_missing_idx_file_names_path(tmp_path):
    with pytest.raises(DataError, match=r"missing file .*train-images-idx3-ubyte.*MNIST"):
        mtlkit.get_benchmark("multi_mnist", data_root=str(tmp_path), **SMALL).splits()


def test_truncated_idx_file(tmp_path):
    root = make_mnist_root(tmp_path, gz=False)
    f = root / "train-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(DataError, match="truncated or corrupted"):
        mtlkit.get_benchmark("multi_mnist", data_root=str(root), **SMALL).splits()


def test_corrupt_gzip(tmp_path):
    root = make_mnist_root(tmp_path, gz=True)
    f = root / "t10k-labels-idx1-ubyte.gz"
    f.write_bytes(f.read_bytes()[:20])
    with pytest.raises(DataError, match="t10k-labels"):
        mtlkit.get_benchmark("multi_mnist", data_root=str(root), **SMALL).splits()


def test_label_out_of_range(tmp_path):
    root = make_mnist_root(tmp_path, gz=False)
    write_idx(root / "train-labels-idx1-ubyte", np.full(120, 12))
    with pytest.raises(DataError, match=r"label values must be in \[0, 10\)"):
        mtlkit.get_benchmark("multi_mnist", data_root=str(root), **SMALL).splits()


def test_bad_parameters():
    from mtlkit.errors import ConfigError
    with pytest.raises(ConfigError, match="fit='stretch'"):
        mtlkit.get_benchmark("multi_mnist", fit="stretch")
    with pytest.raises(ConfigError, match="n_train=0"):
        mtlkit.get_benchmark("multi_mnist", n_train=0)


def test_default_model_is_lenet_with_two_heads():
    model = mtlkit.get_benchmark("multi_mnist", **SMALL).build_model()
    out = model(torch.zeros(3, 1, 28, 28))
    assert {k: tuple(v.shape) for k, v in out.items()} == {"left": (3, 10), "right": (3, 10)}
    shared = sum(p.numel() for _, p in model.shared_named_parameters())
    assert shared == 10 * 25 + 10 + 20 * 250 + 20 + 320 * 50 + 50
