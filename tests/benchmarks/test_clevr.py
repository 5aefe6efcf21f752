"""CLEVR v1.0 (VTAB tasks) from a tiny folder in the official layout."""

from __future__ import annotations

import json

import pytest
import torch
from mtlkit_plugins.benchmarks.clevr import ST_BASELINES, Clevr, distance_label

from mtlkit.errors import DataError
from tests.fixtures.vision import train_few_steps, write_clevr


def vtab_bin(depth: float) -> int:
    """VTAB's bins written out by hand: (0, 8], (8, 8.5], (8.5, 9], (9, 9.5], (9.5, 10],
    (10, 100]."""
    for label, upper in enumerate((8.0, 8.5, 9.0, 9.5, 10.0, 100.0)):
        if depth <= upper:
            return label
    raise AssertionError(depth)


@pytest.mark.parametrize("depth", [0.5, 8.0, 8.01, 8.5, 9.2, 9.7, 10.0, 10.5, 99.0, 100.0])
def test_distance_bins(depth):
    assert distance_label(depth) == vtab_bin(depth)


def test_trains_end_to_end(tmp_path):
    write_clevr(tmp_path)
    results = train_few_steps("clevr", tmp_path, image_size=32)
    assert set(results["tasks"]) == {"count_all", "closest_object_distance"}
    assert results["delta_m"] is None


def test_labels_and_vtab_splits(tmp_path):
    depths = write_clevr(tmp_path, n_train=10, n_val=4)
    splits = Clevr(str(tmp_path), image_size=16).splits()
    # train = train[:800] within the first 90% (9), val = train[90%:][:200] (1), test = CLEVR val
    assert (len(splits.train), len(splits.val), len(splits.test)) == (9, 1, 4)
    for i, d in enumerate(depths["val"]):
        x, y = splits.test[i]
        assert int(y["count_all"]) == len(d) - 3
        assert int(y["closest_object_distance"]) == vtab_bin(min(d))
    assert int(splits.val[0][1]["count_all"]) == len(depths["train"][9]) - 3
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32
    vit = Clevr(str(tmp_path), backbone="vit_b_16")
    assert vit.stl_baselines == ST_BASELINES and vit.image_size == 224


def test_missing_scenes_names_path_and_source(tmp_path):
    write_clevr(tmp_path)
    (tmp_path / "scenes" / "CLEVR_val_scenes.json").unlink()
    with pytest.raises(DataError, match=r"scenes/CLEVR_val_scenes\.json.*jcjohns/clevr"):
        Clevr(str(tmp_path)).splits()


def test_missing_image_names_its_path(tmp_path):
    write_clevr(tmp_path)
    (tmp_path / "images" / "val" / "CLEVR_val_000002.png").unlink()
    with pytest.raises(DataError, match=r"images/val/CLEVR_val_000002\.png"):
        Clevr(str(tmp_path)).splits()


def test_corrupted_png(tmp_path):
    write_clevr(tmp_path)
    path = tmp_path / "images" / "train" / "CLEVR_train_000000.png"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DataError, match="truncated or corrupted"):
        Clevr(str(tmp_path)).splits().train[0]


@pytest.mark.parametrize("edit, message", [
    (lambda s: s["objects"].__delitem__(slice(2, None)), "2 objects"),
    (lambda s: s["objects"][0]["pixel_coords"].__setitem__(2, -1.0), "outside"),
    (lambda s: s["objects"][0].pop("pixel_coords"), "pixel_coords"),
])
def test_bad_scenes(tmp_path, edit, message):
    write_clevr(tmp_path)
    path = tmp_path / "scenes" / "CLEVR_train_scenes.json"
    data = json.loads(path.read_text())
    edit(data["scenes"][0])
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=message):
        Clevr(str(tmp_path)).splits()


def test_truncated_scenes_file(tmp_path):
    write_clevr(tmp_path)
    path = tmp_path / "scenes" / "CLEVR_train_scenes.json"
    path.write_text(path.read_text()[:-50])
    with pytest.raises(DataError, match="truncated or corrupted"):
        Clevr(str(tmp_path)).splits()
