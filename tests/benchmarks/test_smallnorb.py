"""SmallNORB from tiny official .mat files, end to end and with bad data."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch
from mtlkit_plugins.benchmarks._norb import read_matrix
from mtlkit_plugins.benchmarks.smallnorb import ST_BASELINES, SmallNORB

from mtlkit.errors import ConfigError, DataError
from tests.fixtures.vision import NORB_FILES, norb_bytes, train_few_steps, write_smallnorb

TRAIN_INFO = NORB_FILES["train"].format("info")
TRAIN_DAT = NORB_FILES["train"].format("dat")


def test_trains_end_to_end_from_gzipped_files(tmp_path):
    write_smallnorb(tmp_path, gz=True)
    results = train_few_steps("smallnorb", tmp_path, image_size=32)
    assert set(results["tasks"]) == {"azimuth", "elevation"}
    assert set(results["tasks"]["azimuth"]) == {"accuracy", "top5", "loss"}
    assert results["delta_m"] is None  # small_cnn is not ST's protocol


def test_labels_splits_and_images(tmp_path):
    infos = write_smallnorb(tmp_path, n_train=10, n_test=8)
    bench = SmallNORB(str(tmp_path), image_size=24)
    splits = bench.splits()
    # vtab1k: train[:800], val = test[:200] (capped at the first half), test = test[50%:]
    assert (len(splits.train), len(splits.val), len(splits.test)) == (10, 4, 4)
    az = torch.stack([splits.test[i][1]["azimuth"] for i in range(4)])
    el = torch.stack([splits.test[i][1]["elevation"] for i in range(4)])
    assert az.tolist() == (infos["test"][4:, 2] // 2).tolist()
    assert el.tolist() == infos["test"][4:, 1].tolist()
    assert splits.train[0][0].shape == (1, 24, 24)
    full = SmallNORB(str(tmp_path), split="full", n_train=3).splits()
    assert (len(full.train), len(full.val), len(full.test)) == (3, 4, 4)


def test_st_baselines_only_under_st_protocol(tmp_path):
    assert SmallNORB(str(tmp_path)).stl_baselines is None
    assert SmallNORB(str(tmp_path), split="full", backbone="vit_b_16").stl_baselines is None
    assert SmallNORB(str(tmp_path), backbone="vit_b_16", image_size=32).stl_baselines is None
    vit = SmallNORB(str(tmp_path), backbone="vit_b_16")
    assert vit.stl_baselines == ST_BASELINES
    assert "Tab. 11" in vit.baseline_source
    assert vit.image_size == 224 and vit.rgb
    with pytest.raises(ConfigError, match="split"):
        SmallNORB(str(tmp_path), split="vtab")


def test_reader_matches_the_written_matrix(tmp_path):
    a = np.arange(24, dtype=np.int32).reshape(6, 4)
    (tmp_path / "m.mat").write_bytes(norb_bytes(a))
    assert np.array_equal(read_matrix(tmp_path / "m.mat"), a)
    v = np.array([3, 1, 4], dtype=np.int32)  # 1-D: three dims are still stored
    (tmp_path / "v.mat.gz").write_bytes(gzip.compress(norb_bytes(v)))
    assert np.array_equal(read_matrix(tmp_path / "v.mat.gz"), v)


def test_missing_file_names_path_and_source(tmp_path):
    write_smallnorb(tmp_path)
    (tmp_path / TRAIN_INFO).unlink()
    with pytest.raises(DataError, match=rf"{TRAIN_INFO}.*cs\.nyu\.edu/~ylclab"):
        SmallNORB(str(tmp_path)).splits()


def test_truncated_file(tmp_path):
    write_smallnorb(tmp_path)
    path = tmp_path / TRAIN_DAT
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match="truncated or corrupted"):
        SmallNORB(str(tmp_path)).splits()


def test_bad_magic(tmp_path):
    write_smallnorb(tmp_path)
    path = tmp_path / TRAIN_DAT
    path.write_bytes(b"\x00\x00\x00\x00" + path.read_bytes()[4:])
    with pytest.raises(DataError, match="bad magic number"):
        SmallNORB(str(tmp_path)).splits()


@pytest.mark.parametrize("column, value, message", [
    (2, 7, "azimuth"), (2, 36, "azimuth"), (1, 9, "elevation")])
def test_label_out_of_range(tmp_path, column, value, message):
    infos = write_smallnorb(tmp_path)
    info = infos["train"].copy()
    info[3, column] = value
    (tmp_path / TRAIN_INFO).write_bytes(norb_bytes(info))
    with pytest.raises(DataError, match=message):
        SmallNORB(str(tmp_path)).splits()


def test_dat_and_info_lengths_must_agree(tmp_path):
    infos = write_smallnorb(tmp_path)
    (tmp_path / TRAIN_INFO).write_bytes(norb_bytes(infos["train"][:-1]))
    with pytest.raises(DataError, match="mismatched"):
        SmallNORB(str(tmp_path)).splits()


def test_category_file_is_optional_but_checked(tmp_path):
    write_smallnorb(tmp_path)
    cat = tmp_path / NORB_FILES["test"].format("cat")
    cat.write_bytes(norb_bytes(np.full(8, 7, dtype=np.int32)))
    with pytest.raises(DataError, match=r"categories must be in 0\.\.4"):
        SmallNORB(str(tmp_path)).splits()
    cat.unlink()
    assert len(SmallNORB(str(tmp_path)).splits().test) == 4
