"""The MTAN .npy layout: every kind of bad data gives one clear DataError; augmentation."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from fixtures.dense import write_nyuv2
from mtlkit_plugins.benchmarks._dense_npy import SCALES, random_scale_crop_flip

from mtlkit import get_benchmark
from mtlkit.errors import DataError


@pytest.fixture
def root(tmp_path):
    return write_nyuv2(tmp_path / "nyuv2", n_train=3, n_val=2, size=(6, 8))


def load_all(root):
    splits = get_benchmark("nyuv2", data_root=str(root), augment=False).splits()
    for split in (splits.train, splits.val, splits.test):
        for i in range(len(split)):
            split[i]


def expect(root, *fragments):
    with pytest.raises(DataError) as info:
        load_all(root)
    message = str(info.value)
    for fragment in fragments:
        assert str(fragment) in message, message
    return message


def test_valid_fixture_loads(root):
    load_all(root)


def test_missing_split_folder(root, tmp_path):
    expect(tmp_path / "elsewhere", tmp_path / "elsewhere" / "train", "dropbox.com")


def test_missing_task_folder(root):
    for f in (root / "val" / "normal").iterdir():
        f.unlink()
    (root / "val" / "normal").rmdir()
    expect(root, root / "val" / "normal", "dropbox.com")


def test_missing_file_is_named(root):
    (root / "train" / "depth" / "1.npy").unlink()
    np.save(root / "train" / "depth" / "3.npy", np.ones((6, 8, 1), np.float32))
    expect(root, root / "train" / "depth" / "1.npy", "dropbox.com")


def test_a_sample_missing_from_one_folder_is_named(root):
    np.save(root / "train" / "label" / "3.npy", np.zeros((6, 8), np.float32))
    expect(root, root / "train" / "image" / "3.npy", "dropbox.com")


def test_truncated_file(root):
    path = root / "train" / "image" / "2.npy"
    path.write_bytes(path.read_bytes()[:200])
    expect(root, path, "truncated")


def test_not_an_npy_file(root):
    path = root / "val" / "depth" / "0.npy"
    path.write_bytes(b"not numpy at all")
    expect(root, path)


def test_pickled_object_array(root):
    path = root / "val" / "label" / "1.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    expect(root, path)


@pytest.mark.parametrize(("folder", "array", "fragment"), [
    ("image", np.zeros((6, 8), np.float32), "[H, W, 3]"),
    ("image", np.zeros((3, 6, 8), np.float32), "[H, W, 3]"),
    ("normal", np.zeros((6, 8, 1), np.float32), "[H, W, 3]"),
    ("depth", np.zeros((6, 8, 2), np.float32), "[H, W, 1]"),
    ("label", np.zeros((5, 8), np.float32), "one size"),
    ("image", np.zeros((6, 8, 3), np.complex64), "dtype"),
])
def test_wrong_shapes_and_dtypes(root, folder, array, fragment):
    path = root / "train" / folder / "1.npy"
    np.save(path, array)
    expect(root, path, fragment)


@pytest.mark.parametrize(("folder", "change", "fragment"), [
    ("label", lambda a: a.__setitem__((0, 0), 13), "out of range"),
    ("label", lambda a: a.__setitem__((0, 0), -2), "out of range"),
    ("label", lambda a: a.__setitem__((0, 0), 2.5), "non-integer"),
    ("image", lambda a: a.__setitem__((0, 0, 0), np.nan), "NaN"),
    ("depth", lambda a: a.__setitem__((0, 0, 0), -1.0), "negative"),
])
def test_bad_values(root, folder, change, fragment):
    path = root / "val" / folder / "1.npy"
    array = np.load(path)
    change(array)
    np.save(path, array)
    expect(root, path, fragment)


def test_normals_outside_the_unit_range_give_a_warning(root):
    path = root / "val" / "normal" / "1.npy"
    np.save(path, np.full((6, 8, 3), 200.0, np.float32))
    with pytest.warns(UserWarning, match="outside"):
        load_all(root)


def test_a_single_training_sample_uses_the_test_split_for_validation(tmp_path):
    root = write_nyuv2(tmp_path, n_train=1, n_val=2, size=(4, 4))
    with pytest.warns(UserWarning, match="single sample"):
        splits = get_benchmark("nyuv2", data_root=str(root)).splits()
    assert len(splits.train) == 1 and splits.val is splits.test


@pytest.mark.parametrize(("folder", "value"), [("label", 40), ("depth", -3.0)])
def test_bad_targets_anywhere_stop_the_run_before_training(root, tmp_path, folder, value):
    from mtlkit.config import TrainConfig
    from mtlkit.trainer import Trainer

    # one bad sample, which a one-step run might never draw: caught when the splits are built
    path = root / "train" / folder / "2.npy"
    array = np.load(path)
    array[0, 0] = value
    np.save(path, array)
    with pytest.raises(DataError, match=re.escape(str(path))):
        get_benchmark("nyuv2", data_root=str(root)).splits()
    cfg = TrainConfig(benchmark="nyuv2", data_root=str(root), max_steps=1, threads=1,
                      benchmark_params={"width": 2, "stages": 1}, checkpoint=False)
    with pytest.raises(DataError, match=r"out of range|negative"):
        Trainer(cfg, tmp_path / "out", progress=False)


def test_augmentation_keeps_values_consistent():
    g = torch.Generator().manual_seed(0)
    h, w = 12, 10
    label = torch.randint(-1, 13, (h, w), generator=g)
    depth = torch.rand(1, h, w, generator=g) + 1.0
    normal = torch.nn.functional.normalize(torch.randn(3, h, w, generator=g), dim=0)
    image = torch.rand(3, h, w, generator=g)
    flips = 0
    for seed in range(30):
        torch.manual_seed(seed)
        out = random_scale_crop_flip({"image": image, "label": label, "depth": depth,
                                      "normal": normal})
        assert out["image"].shape == (3, h, w) and out["label"].shape == (h, w)
        assert set(out["label"].unique().tolist()) <= set(label.unique().tolist())
        torch.manual_seed(seed)  # replay the draws: the scale comes first
        s = SCALES[int(torch.randint(len(SCALES), ()))]
        # nearest-neighbour depth divided by the scale: depth * s are original values
        restored = (out["depth"] * s).flatten()[:, None]
        assert torch.isclose(restored, depth.flatten()[None]).any(dim=1).all()
        if s == 1.0:
            flipped = torch.equal(out["image"], image.flip(-1))
            assert flipped or torch.equal(out["image"], image)
            if flipped:
                flips += 1
                assert torch.allclose(out["normal"][0], -normal[0].flip(-1))
                assert torch.allclose(out["normal"][1:], normal[1:].flip(-1))
    assert flips > 0


def test_hidden_files_are_ignored_and_test_may_have_its_own_size(tmp_path):
    root = write_nyuv2(tmp_path / "a", n_train=2, n_val=1, size=(6, 8))
    write_nyuv2(tmp_path / "b", n_train=0, n_val=1, size=(4, 4))
    for folder in ("image", "label", "depth", "normal"):
        (root / "val" / folder / "0.npy").unlink()
        (tmp_path / "b" / "val" / folder / "0.npy").rename(root / "val" / folder / "0.npy")
    (root / "train" / "image" / "._0.npy").write_bytes(b"resource fork")
    bench = get_benchmark("nyuv2", data_root=str(root))
    assert bench.splits().test[0][0].shape == (3, 4, 4)
    assert bench.splits().train[0][0].shape == (3, 6, 8)
