"""Sparse training in the trainer: frozen coordinates, compaction, mask point, CLI."""

from __future__ import annotations

import json

import pytest
import torch

from mtlkit import hookimpl
from mtlkit.aggregation import Aggregator
from mtlkit.cli import main
from mtlkit.config import TrainConfig
from mtlkit.plugins import PluginManager
from mtlkit.trainer import Trainer

SMALL = {"n_train": 256, "n_val": 64, "n_test": 64}


def _config(**kw):
    base = dict(benchmark_params=SMALL, max_steps=4, epochs=1, batch_size=32, threads=1,
                checkpoint=False, probes=[])
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize("optimizer, extra", [
    ("sgd", {"momentum": 0.9, "weight_decay": 0.1}),
    ("adam", {"weight_decay": 0.1}),
    ("adamw", {"weight_decay": 0.5}),
])
def test_frozen_coordinates_stay_bit_identical(optimizer, extra):
    trainer = Trainer(_config(mask="psn", density=0.3, optimizer=optimizer, lr=0.05, **extra),
                      None, progress=False)
    before = {n: p.detach().clone() for n, p in trainer.shared}
    trainer.fit()
    changed_trainable = 0
    for name, p in trainer.shared:
        m = trainer.mask.masks[name]
        assert torch.equal(p.detach()[~m], before[name][~m]), name
        changed_trainable += int((p.detach()[m] != before[name][m]).sum())
    assert changed_trainable > 0.5 * trainer.mask.trainable_count


def test_zeroing_grad_alone_does_not_freeze_under_adamw():
    """Why the trainer restores frozen values: AdamW's decay ignores the (zero) gradient."""
    p = torch.nn.Parameter(torch.ones(4))
    opt = torch.optim.AdamW([p], lr=0.1, weight_decay=0.5)
    p.grad = torch.zeros(4)
    opt.step()
    assert not torch.equal(p.detach(), torch.ones(4))


def _recording_plugin(widths):
    class Recorder(Aggregator):
        """Records the width it sees; weights from the Gramian (normalised gradients)."""

        def aggregate(self, J, context):
            widths.append(J.shape[1])
            norms = J.norm(dim=1, keepdim=True).clamp_min(1e-12)
            return (J / norms).mean(0)

    class Plugin:
        @hookimpl
        def register_aggregators(self, register):
            register("recorder", Recorder)

    return Plugin()


def test_the_aggregator_sees_only_trainable_coordinates_by_default_and_all_with_full():
    pm = PluginManager()
    widths: list[int] = []
    pm.register(_recording_plugin(widths), "recorder")
    trainable = Trainer(_config(mask="psn", density=0.3, aggregator="recorder", max_steps=2),
                        None, plugins=pm, progress=False)
    trainable.fit()
    full = Trainer(_config(mask="psn", density=0.3, aggregator="recorder", max_steps=2,
                           mask_point="full"), None, plugins=pm, progress=False)
    full.fit()
    assert widths[:2] == [trainable.mask.trainable_count] * 2
    assert widths[2:] == [full.mask.total_count] * 2
    # the two points give different updates for a gradient-normalising aggregator
    diff = [not torch.equal(a.detach(), b.detach())
            for (_, a), (_, b) in zip(trainable.shared, full.shared)]
    assert any(diff)
    # ... and with "full" the frozen coordinates are still untouched
    init = Trainer(_config(mask="psn", density=0.3), None, progress=False)
    for (name, p), (_, p0) in zip(full.shared, init.shared):
        m = full.mask.masks[name]
        assert torch.equal(p.detach()[~m], p0.detach()[~m])


def test_mask_points_agree_for_equal_weighting():
    a = Trainer(_config(mask="psn", density=0.3), None, progress=False)
    a.fit()
    b = Trainer(_config(mask="psn", density=0.3, mask_point="full"), None, progress=False)
    b.fit()
    for (_, p), (_, q) in zip(a.shared, b.shared):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-7)


def test_cli_combines_a_mask_with_an_aggregator_and_reports_both_incidences(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "--mask", "psn", "--density", "0.3", "--aggregator", "mean",
               "--max-steps", "6", "--epochs", "1", "--batch-size", "32", "--threads", "1",
               "--benchmark-param", "n_train=256", "--benchmark-param", "n_val=64",
               "--benchmark-param", "n_test=64", "--out", str(out), "--quiet"])
    assert rc == 0
    r = json.loads((out / "results.json").read_text())
    assert abs(r["trainable_fraction"] - 0.3) <= 0.02
    c = r["conflict"]
    for key in ("incidence_all", "incidence_last_half", "incidence_trainable_all",
                "incidence_trainable_last_half"):
        assert 0.0 <= c[key] <= 1.0
    assert r["mask_info"]["k"] >= 1 and r["mask_info"]["mask_point"] == "trainable"


@pytest.mark.parametrize("args, match", [
    (["--density", "0"], "density"), (["--density", "1.2"], "density"), (["--k", "0"], "k="),
    (["--mask-param", "include=\"nothing.*\""], "matches no shared parameter"),
])
def test_cli_bad_mask_input_exits_2_with_one_line(tmp_path, capsys, args, match):
    rc = main(["train", "--mask", "psn", *args, "--max-steps", "1", "--threads", "1",
               "--benchmark-param", "n_train=64", "--out", str(tmp_path / "x"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and match in err and "Traceback" not in err


def test_cli_warns_in_one_line_when_k_is_clamped(tmp_path, capsys):
    rc = main(["train", "--mask", "psn", "--k", "5000", "--max-steps", "1", "--threads", "1",
               "--benchmark-param", "n_train=64", "--out", str(tmp_path / "x"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 0 and "mtlkit: warning: mask: k=5000 exceeds every fan-in" in err
    r = json.loads((tmp_path / "x" / "results.json").read_text())
    assert r["mask_info"]["k"] == 320 and r["trainable_fraction"] == 1.0
