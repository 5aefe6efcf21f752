"""Seed aggregation, the Markdown table and the plots, on hand-made summary rows."""

from __future__ import annotations

import pytest
from search_helpers import write_spec

from mtlkit.search import load_spec
from mtlkit.search.report import aggregate, markdown_table, plot


@pytest.fixture
def spec(tmp_path):
    return load_spec(write_spec(tmp_path, """
        [variants.dense]
        mask = "dense"
        [variants.dense2]
        mask = "dense"
        lr = 0.01
        [grid]
        aggregator = ["mean"]
        seed = [0, 1]
    """))


def rows():
    out = []
    for variant, mask, frac in (("dense", "dense", 1.0), ("dense2", "psn", 0.3)):
        for seed, dm, p in ((0, 1.0, 40.0), (1, 3.0, 30.0)):
            out.append({"trial_id": f"{variant}{seed}", "status": "done", "variant": variant,
                        "aggregator": "mean", "mask": mask, "seed": seed,
                        "test.mean.accuracy": 0.5 + seed / 10, "delta_m": dm + frac,
                        "p_all_pct": p, "p_last_half_pct": p / 2, "trainable_fraction": frac})
    out.append({"trial_id": "bad", "status": "error", "error": "boom", "variant": "dense",
                "aggregator": "mean", "mask": "dense", "seed": 2})
    return out


def test_aggregate_groups_by_swept_keys_except_seed(spec):
    keys, table = aggregate(rows(), spec)
    assert keys == ["variant", "aggregator"]
    assert [(e["variant"], e["n"]) for e in table] == [("dense", 2), ("dense2", 2)]
    mean, std = table[0]["delta_m"]
    assert mean == pytest.approx(3.0) and std == pytest.approx(2 ** 0.5)
    assert table[1]["trainable_fraction"] == (pytest.approx(0.3), 0.0)


def test_markdown_table_shows_mean_std_and_failures(spec):
    keys, table = aggregate(rows(), spec)
    text = markdown_table(keys, table, spec, rows())
    assert "| variant | aggregator | n | test.mean.accuracy | delta_m |" in text
    assert "| dense | mean | 2 | 0.55 ± 0.071 | 3 ± 1.4 |" in text
    assert "1 trial(s) failed: bad (boom)" in text


def test_plots_are_written_when_density_and_mask_vary(tmp_path):
    pytest.importorskip("matplotlib")
    paths = plot(rows(), tmp_path)
    assert sorted(p.name for p in paths) == ["conflict_dense_vs_sparse.png",
                                             "delta_m_vs_density.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    only_dense = [r for r in rows() if r.get("mask") == "dense"]
    assert plot(only_dense, tmp_path / "none") == []
