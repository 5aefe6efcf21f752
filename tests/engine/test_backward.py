"""MTLBackward on a model of the test's own: gradients against per-task autograd references,
frozen coordinates under AdamW, every path, accumulation, autocast, GradScaler, bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import mtlkit
from mtlkit.errors import ConfigError, GradientError, PluginError
from mtlkit.masking import ParameterMask


class TwoHeads(nn.Module):
    """Not a bundled backbone: a trunk, a task-specific branch inside, and three heads."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 8), nn.Tanh())
        self.extra = nn.Linear(8, 8)  # used by task "b" only: task-specific, not in a head
        self.heads = nn.ModuleDict({t: nn.Linear(8, 1) for t in "abc"})

    def forward(self, x):
        z = self.trunk(x)
        return {"a": self.heads["a"](z), "b": self.heads["b"](torch.tanh(self.extra(z))),
                "c": self.heads["c"](z)}


def losses_of(model, x, ys):
    out = model(x)
    return {t: ((out[t] - ys[t]) ** 2).mean() for t in out}


def data(seed=0, batch=16):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 6, generator=g), {t: torch.randn(batch, 1, generator=g)
                                                for t in "abc"}


def reference(model, x, ys, aggregator):
    """Per-task gradients by plain autograd; the aggregator applied to their stacked J."""
    losses = losses_of(model, x, ys)
    shared = list(model.trunk.parameters())
    rows, own = [], {}
    for t, loss in losses.items():
        grads = torch.autograd.grad(loss, shared, retain_graph=True)
        rows.append(torch.cat([g.reshape(-1) for g in grads]))
        others = [p for n, p in model.named_parameters()
                  if not n.startswith("trunk.") and p.requires_grad]
        g_own = torch.autograd.grad(loss, others, retain_graph=True, allow_unused=True)
        own[t] = {id(p): g for p, g in zip(others, g_own) if g is not None}
    J = torch.stack(rows)
    d = mtlkit.get_aggregator(aggregator)(J)
    return J, d, own


def shared_grad(model):
    return torch.cat([p.grad.reshape(-1) for p in model.trunk.parameters()])


@pytest.mark.parametrize("aggregator,jacobian", [
    ("upgrad", "loop"), ("upgrad", "batched"), ("upgrad", "gramian"), ("imtl_g", "loop"),
    ("mgda", "batched"), ("cagrad", "loop"), ("mean", "loop"), ("upgrad", "autogram"),
    ("mgda", "autogram")])
def test_gradients_equal_per_task_reference(aggregator, jacobian):
    torch.manual_seed(0)
    model = TwoHeads().double()
    x, ys = data()
    x, ys = x.double(), {t: y.double() for t, y in ys.items()}
    _J, d, own = reference(model, x, ys, aggregator)
    mtl = mtlkit.MTLBackward(model.trunk, aggregator, jacobian=jacobian)
    report = mtl.backward(losses_of(model, x, ys))
    assert report.applied and not report.skipped
    torch.testing.assert_close(shared_grad(model), d, rtol=1e-9, atol=1e-12)
    # every task-specific parameter: exactly its own task's gradient (extra: task b's)
    seen = set()
    for _t, grads in own.items():
        for p in model.parameters():
            if id(p) in grads:
                torch.testing.assert_close(p.grad, grads[id(p)], rtol=1e-12, atol=1e-14)
                seen.add(id(p))
    assert id(model.extra.weight) in seen and len(seen) == 2 + 3 * 2


def test_frozen_coordinates_bit_identical_under_adamw_with_weight_decay():
    torch.manual_seed(1)
    model = TwoHeads()
    opt = torch.optim.AdamW(model.parameters(), lr=0.05, weight_decay=0.5)
    mtl = mtlkit.MTLBackward(model.trunk, "upgrad", mask={"name": "psn", "density": 0.3},
                             optimizer=opt)
    before = {n: p.detach().clone() for n, p in model.trunk.named_parameters()}
    for step in range(200):
        x, ys = data(step)
        opt.zero_grad()
        mtl.backward(losses_of(model, x, ys))
        opt.step()
    moved = 0
    for n, p in model.trunk.named_parameters():
        m = mtl.mask.masks[n]
        assert torch.equal(p.detach()[~m], before[n][~m]), n
        moved += int((p.detach()[m] != before[n][m]).sum())
    assert moved > 0.9 * mtl.mask.trainable_count


def test_mask_on_parameters_the_optimizer_does_not_hold_is_refused():
    model = TwoHeads()
    opt = torch.optim.SGD(model.heads.parameters(), lr=0.1)
    with pytest.raises(ConfigError, match="optimizer does not hold"):
        mtlkit.MTLBackward(model.trunk, "mean", mask={"name": "psn", "density": 0.5},
                           optimizer=opt)


def test_stateful_aggregator_keeps_state_across_calls():
    torch.manual_seed(2)
    model = TwoHeads()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    mtl = mtlkit.MTLBackward(model.trunk, "famo", optimizer=opt)
    for step in range(3):
        x, ys = data(step)
        opt.zero_grad()
        report = mtl.backward(losses_of(model, x, ys),
                              losses_after=lambda x=x, ys=ys: losses_of(model, x, ys))
        opt.step()
    # FAMO's logits moved away from their initial zeros: its after_step ran on every step
    assert report.weights is not None and not torch.allclose(
        report.weights, torch.full((3,), 1 / 3, dtype=report.weights.dtype))


def test_probes_report_and_representation_path():
    torch.manual_seed(3)
    model = TwoHeads()
    x, ys = data()
    z = model.trunk(x)
    out = {t: model.heads[t](z) for t in "ac"}
    losses = {t: ((out[t] - ys[t]) ** 2).mean() for t in out}
    dz = torch.stack([torch.autograd.grad(losses[t], z, retain_graph=True)[0].reshape(-1)
                      for t in losses])
    report = mtlkit.mtl_backward(losses, model.trunk, "mgda", features=z, probes=["cosine"])
    assert "cosine.incidence" in report.probes
    # representation path: shared grad = backward of z with dz = sum_k w_k dL_k/dz
    w = report.weights
    z_again = model.trunk(x)  # the engine freed z's graph; the same forward rebuilds it
    ref = torch.autograd.grad(z_again, list(model.trunk.parameters()),
                              grad_outputs=(w @ dz).reshape(z.shape))
    torch.testing.assert_close(shared_grad(model), torch.cat([g.reshape(-1) for g in ref]))


def test_accumulation_equals_one_big_batch():
    torch.manual_seed(4)
    model = TwoHeads().double()
    x, ys = data(batch=32)
    x, ys = x.double(), {t: y.double() for t, y in ys.items()}
    _, d, _ = reference(model, x, ys, "upgrad")
    mtl = mtlkit.MTLBackward(model.trunk, "upgrad", accumulation_steps=2)
    r1 = mtl.backward(losses_of(model, x[:16], {t: y[:16] for t, y in ys.items()}))
    assert not r1.applied
    r2 = mtl.backward(losses_of(model, x[16:], {t: y[16:] for t, y in ys.items()}))
    assert r2.applied
    torch.testing.assert_close(shared_grad(model), d, rtol=1e-9, atol=1e-12)


def test_bfloat16_autocast_runs_and_matches_float32_roughly():
    torch.manual_seed(5)
    model = TwoHeads()
    x, ys = data()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = losses_of(model, x, ys)
    mtlkit.MTLBackward(model.trunk, "upgrad").backward(losses)
    g16 = shared_grad(model).clone()
    model.zero_grad()
    mtlkit.MTLBackward(model.trunk, "upgrad").backward(losses_of(model, x, ys))
    g32 = shared_grad(model)
    assert torch.isfinite(g16).all()
    cos = torch.nn.functional.cosine_similarity(g16, g32, dim=0)
    assert cos > 0.95  # bfloat16 keeps 8 bits of mantissa: the direction survives


def test_grad_scaler_sees_unscaled_jacobian_and_skips_inf_steps():
    torch.manual_seed(6)
    model = TwoHeads().double()
    x, ys = data()
    x, ys = x.double(), {t: y.double() for t, y in ys.items()}
    _, d, _ = reference(model, x, ys, "upgrad")
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    mtl = mtlkit.MTLBackward(model.trunk, "upgrad", scaler=scaler, optimizer=opt)
    mtl.backward(losses_of(model, x, ys))
    torch.testing.assert_close(shared_grad(model) / 1024.0, d, rtol=1e-9, atol=1e-12)
    scaler.step(opt)
    scaler.update()
    assert scaler.get_scale() == 1024.0 * 2.0 ** 0  # no inf: scale unchanged (growth later)
    # an overflowing step is left to the scaler: skipped, scale lowered
    opt.zero_grad()
    losses = losses_of(model, x, ys)
    losses["a"] = losses["a"] * float("inf")
    mtl.nonfinite = "error"
    report = mtl.backward(losses)
    assert report.skipped
    scaler.step(opt)
    scaler.update()
    assert scaler.get_scale() < 1024.0


@pytest.mark.parametrize("bad,match", [
    (lambda m, L: L["a"].repeat(2), "invalid loss for task"),
    (lambda m, L: [], "empty"),
])
def test_bad_losses_one_clear_message(bad, match):
    model = TwoHeads()
    x, ys = data()
    L = losses_of(model, x, ys)
    losses = bad(model, L)
    if isinstance(losses, torch.Tensor):
        losses = {"a": losses, "b": L["b"]}
    with pytest.raises(ConfigError, match=match):
        mtlkit.MTLBackward(model.trunk, "mean").backward(losses)


def test_shared_parameter_no_loss_reaches_is_named():
    model = TwoHeads()
    unused = nn.Linear(3, 3)
    x, ys = data()
    mtl = mtlkit.MTLBackward([*model.trunk.named_parameters(), ("unused.weight", unused.weight)],
                             "mean")
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ConfigError, match=r"unused\.weight"):
        mtl.backward(losses_of(model, x, ys))
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))


def test_unknown_aggregator_lists_the_available_ones():
    with pytest.raises(PluginError, match=r"available:.*upgrad"):
        mtlkit.MTLBackward(TwoHeads().trunk, "no_such_method")


def test_nonfinite_gradient_raises_naming_the_task_and_skip_leaves_grads_empty():
    model = TwoHeads()
    x, ys = data()
    losses = losses_of(model, x, ys)
    losses["c"] = losses["c"] * torch.tensor(float("nan"))
    with pytest.raises(GradientError, match=r"non-finite loss for task.*c"):
        mtlkit.MTLBackward(model.trunk, "upgrad").backward(losses)
    losses = losses_of(model, x, ys)
    losses["c"] = losses["c"] * torch.tensor(float("nan"))
    report = mtlkit.MTLBackward(model.trunk, "upgrad", nonfinite="skip").backward(losses)
    assert report.skipped and all(p.grad is None for p in model.parameters())


def test_parameter_mask_and_gradient_strategy_on_first_call():
    torch.manual_seed(7)
    model = TwoHeads()
    x, ys = data()
    masks = {n: torch.rand_like(p) < 0.5 for n, p in model.trunk.named_parameters()}
    mtl = mtlkit.MTLBackward(model.trunk, "mean", mask=ParameterMask(masks))
    mtl.backward(losses_of(model, x, ys))
    for n, p in model.trunk.named_parameters():
        assert torch.all(p.grad[~masks[n]] == 0)
    model.zero_grad()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    mtl = mtlkit.MTLBackward(model.trunk, "mean", mask={"name": "gradient", "density": 0.5},
                             optimizer=opt)
    assert mtl.mask.is_dense  # selected on the first call, from that batch's gradients
    mtl.backward(losses_of(model, x, ys))
    assert not mtl.mask.is_dense


def test_autogram_path_equals_loop_path_with_a_mask_and_probes():
    torch.manual_seed(8)
    model = TwoHeads().double()
    x, ys = data()
    x, ys = x.double(), {t: y.double() for t, y in ys.items()}
    masks = {n: torch.rand_like(p) < 0.4 for n, p in model.trunk.named_parameters()}
    grads, probes = [], []
    for jacobian in ("loop", "autogram"):
        model.zero_grad()
        mtl = mtlkit.MTLBackward(model.trunk, "upgrad", jacobian=jacobian,
                                 mask=ParameterMask(dict(masks)), probes=["cosine"])
        report = mtl.backward(losses_of(model, x, ys))
        grads.append([p.grad.clone() for p in model.parameters()])
        probes.append(report.probes)
        mtl.close()
    for g_loop, g_auto in zip(*grads):
        torch.testing.assert_close(g_auto, g_loop, rtol=1e-9, atol=1e-12)
    assert probes[0] == pytest.approx(probes[1])


def test_autogram_refuses_methods_that_need_the_jacobian():
    with pytest.raises(ConfigError, match="autogram"):
        mtlkit.MTLBackward(TwoHeads().trunk, "graddrop", jacobian="autogram")


@pytest.mark.parametrize("aggregator", ["upgrad", "mean"])
def test_probes_see_the_whole_batch_under_accumulation(aggregator):
    """A due probe observes the per-task gradients summed over every micro-batch: the same
    values as one call on the whole batch (Jacobian path and loss path)."""
    torch.manual_seed(9)
    model = TwoHeads().double()
    x, ys = data(batch=32)
    x, ys = x.double(), {t: y.double() for t, y in ys.items()}
    whole = mtlkit.MTLBackward(model.trunk, aggregator, probes=["cosine"])
    expected = whole.backward(losses_of(model, x, ys)).probes
    model.zero_grad()
    mtl = mtlkit.MTLBackward(model.trunk, aggregator, probes=["cosine"], accumulation_steps=2)
    first = mtl.backward(losses_of(model, x[:16], {t: y[:16] for t, y in ys.items()}))
    assert not first.applied and not first.probes
    report = mtl.backward(losses_of(model, x[16:], {t: y[16:] for t, y in ys.items()}))
    assert report.probes.keys() == expected.keys() and expected
    for key, value in expected.items():
        assert report.probes[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
