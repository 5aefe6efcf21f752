"""CelebA from a tiny folder in the official layout, end to end and with bad data."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from mtlkit_plugins.benchmarks.celeba import CelebA

from mtlkit.errors import ConfigError, DataError
from tests.fixtures.vision import CELEBA_ATTRIBUTES, train_few_steps, write_celeba

FIRST10 = [a.lower() for a in CELEBA_ATTRIBUTES[:10]]


@pytest.fixture
def celeba(tmp_path):
    root = tmp_path / "celeba"
    values = write_celeba(root)
    return root, values


def test_trains_end_to_end_on_the_first_10_attributes(celeba):
    root, _ = celeba
    results = train_few_steps("celeba", root, image_size=32)
    assert list(results["tasks"]) == FIRST10
    for metrics in results["tasks"].values():
        assert set(metrics) == {"accuracy", "f1", "loss"}
        assert 0.0 <= metrics["accuracy"] <= 1.0
    assert results["delta_m"] is None  # no per-attribute STL baseline exists in the papers
    assert results["steps"] == 2


def test_targets_and_splits_follow_the_files(celeba):
    root, values = celeba
    bench = CelebA(str(root), attributes=["Male", "young"], image_size=16)
    assert [t.name for t in bench.tasks] == ["male", "young"]
    splits = bench.splits()
    assert (len(splits.train), len(splits.val), len(splits.test)) == (6, 3, 3)
    male = CELEBA_ATTRIBUTES.index("Male")
    expected = (values[9:12, male] + 1) / 2  # test = partition 2 = images 10..12
    got = torch.stack([splits.test[i][1]["male"] for i in range(3)])
    assert torch.equal(got, torch.tensor(expected, dtype=torch.float32))
    x, _ = splits.train[0]
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32
    assert len(CelebA(str(root), attributes="all").tasks) == 40


def test_annotations_in_anno_and_eval_subfolders(celeba):
    root, _ = celeba
    (root / "Anno").mkdir()
    (root / "Eval").mkdir()
    (root / "list_attr_celeba.txt").rename(root / "Anno" / "list_attr_celeba.txt")
    (root / "list_eval_partition.txt").rename(root / "Eval" / "list_eval_partition.txt")
    assert len(CelebA(str(root)).splits().val) == 3


def test_missing_annotation_file_names_path_and_source(celeba):
    root, _ = celeba
    (root / "list_attr_celeba.txt").unlink()
    with pytest.raises(DataError, match=r"list_attr_celeba\.txt.*mmlab\.ie\.cuhk\.edu\.hk"):
        CelebA(str(root))


def test_missing_image_names_its_path(celeba):
    root, _ = celeba
    (root / "img_align_celeba" / "000005.jpg").unlink()
    with pytest.raises(DataError, match=r"img_align_celeba/000005\.jpg"):
        CelebA(str(root)).splits()


def test_corrupted_jpeg_is_an_error_not_a_black_image(celeba):
    root, _ = celeba
    path = root / "img_align_celeba" / "000001.jpg"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataError, match=r"000001\.jpg.*truncated or corrupted"):
        CelebA(str(root)).splits().train[0]


@pytest.mark.parametrize("edit, message", [
    # values are written "%2d": the last two characters are the last attribute value
    (lambda lines: lines.__setitem__(3, lines[3][:-2] + " 2"), "value 2 is not -1 or 1"),
    (lambda lines: lines.__setitem__(5, lines[5][:-2] + " x"), "line 6: attribute values"),
    (lambda lines: lines.pop(), "announces 12 images but 11 follow"),
    (lambda lines: lines.__setitem__(4, lines[4].rsplit(" ", 1)[0]), "expected a file name and 40"),
])
def test_bad_attribute_file(celeba, edit, message):
    root, _ = celeba
    path = root / "list_attr_celeba.txt"
    lines = path.read_text().splitlines()
    edit(lines)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=message):
        CelebA(str(root))


def test_bad_partition_value(celeba):
    root, _ = celeba
    path = root / "list_eval_partition.txt"
    path.write_text(path.read_text().replace("000002.jpg 0", "000002.jpg 3"))
    with pytest.raises(DataError, match="P in"):
        CelebA(str(root))


def test_bad_parameters(celeba, tmp_path):
    root, _ = celeba
    with pytest.raises(ConfigError, match="Bald"):
        CelebA(str(root), attributes=["No_Such_Attribute"])
    with pytest.raises(DataError, match="--data-root"):
        CelebA(None)


def test_cli_run_as_a_user_would(celeba, tmp_path):
    root, _ = celeba
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "mtlkit.cli", "train", "--benchmark", "celeba",
         "--data-root", str(root), "--benchmark-param", "image_size=32",
         "--benchmark-param", 'attributes=["Smiling", "Male"]', "--max-steps", "2",
         "--batch-size", "4", "--threads", "1", "--quiet", "--out", str(out)],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    import json

    results = json.loads((out / "results.json").read_text())
    assert set(results["tasks"]) == {"smiling", "male"}
    assert np.isfinite(results["tasks"]["male"]["loss"])
