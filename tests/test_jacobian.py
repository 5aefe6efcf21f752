"""The Jacobian engine against a naive reference (per-task autograd.grad, then torch.cat)."""

from __future__ import annotations

import pytest
import torch
from mtlkit_plugins.backbones.lenet import LeNetEncoder
from torch import nn

from mtlkit.errors import GradientError
from mtlkit.jacobian import JacobianEngine, all_finite, check_gramian
from mtlkit.masking import ParameterMask
from mtlkit.models import MultiTaskModel

K = 3


def lenet_model() -> tuple[MultiTaskModel, torch.Tensor]:
    enc = LeNetEncoder()
    heads = {f"t{k}": nn.Sequential(nn.Linear(50, 8), nn.ReLU(), nn.Linear(8, 4))
             for k in range(K)}
    return MultiTaskModel(enc, heads), torch.randn(6, 1, 28, 28)


def mlp_model() -> tuple[MultiTaskModel, torch.Tensor]:
    enc = nn.Sequential(nn.Linear(12, 16), nn.Tanh(), nn.Linear(16, 8), nn.Tanh())
    return MultiTaskModel(enc, {f"t{k}": nn.Linear(8, 4) for k in range(K)}), torch.randn(6, 12)


def losses_of(model: MultiTaskModel, x: torch.Tensor, z: torch.Tensor | None = None):
    out = model.heads_forward(model.represent(x) if z is None else z)
    targets = torch.arange(x.shape[0]) % 4
    # different per-task scales so that rows differ
    return torch.stack([(k + 1) * nn.functional.cross_entropy(out[f"t{k}"], targets)
                        for k in range(K)])


def random_mask(model: MultiTaskModel, frozen_param: str | None) -> ParameterMask:
    g = torch.Generator().manual_seed(0)
    shared = dict(model.shared_named_parameters())
    sel = {n: torch.rand(p.shape, generator=g) < 0.4 for n, p in shared.items()}
    if frozen_param is not None:
        sel[frozen_param] = torch.zeros_like(shared[frozen_param], dtype=torch.bool)
    return ParameterMask.from_selection(shared, sel)


def reference(model, x, mask: ParameterMask | None):
    """Naive: one autograd.grad per task on every shared parameter, masked, concatenated."""
    shared = model.shared_named_parameters()
    rows, heads = [], []
    for k in range(K):
        losses = losses_of(model, x)
        grads = torch.autograd.grad(losses[k], [p for _, p in shared])
        parts = []
        for (name, _), g in zip(shared, grads):
            m = torch.ones_like(g, dtype=torch.bool) if mask is None else mask.masks[name]
            parts.append(g[m].reshape(-1))
        rows.append(torch.cat(parts))
        head = [p for _, p in model.task_named_parameters(f"t{k}")]
        heads.append(torch.autograd.grad(losses_of(model, x)[k], head))
    return torch.stack(rows), heads


MODELS = {"lenet": lenet_model, "mlp": mlp_model}
# a whole parameter the random mask freezes, so the engine must skip it
FROZEN = {"lenet": "encoder.conv1.bias", "mlp": "encoder.2.bias"}


def _setup(model_name: str, frozen: str | None, masked: bool):
    torch.manual_seed(0)
    model, x = MODELS[model_name]()
    names = dict(model.shared_named_parameters())
    frozen = frozen if frozen in names else None
    mask = random_mask(model, frozen) if masked else None
    return model, x, mask, frozen


def _task_params(model):
    return [[p for _, p in model.task_named_parameters(f"t{k}")] for k in range(K)]


@pytest.mark.parametrize("model_name", sorted(MODELS))
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("mode", ["loop", "batched"])
def test_jacobian_matches_naive_reference(model_name, masked, mode):
    model, x, mask, frozen = _setup(model_name, FROZEN[model_name], masked)
    J_ref, heads_ref = reference(model, x, mask)
    engine = JacobianEngine(model.shared_named_parameters(), mask, mode=mode)
    tp = _task_params(model)
    result = engine.compute(losses_of(model, x), tp)
    assert result.J.shape == J_ref.shape
    torch.testing.assert_close(result.J, J_ref, rtol=1e-4, atol=1e-6)
    for k in range(K):  # each head got its own task's gradient, and only that
        for p, g in zip(tp[k], heads_ref[k]):
            torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-6)
    if masked:
        i = engine.names.index(frozen)
        assert engine.layout.sizes[i] == 0 and i not in engine._active


@pytest.mark.parametrize("model_name", sorted(MODELS))
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("producer", ["loop", "batched"])
def test_gramian_mode_matches_reference(model_name, masked, producer):
    model, x, mask, _frozen = _setup(model_name, FROZEN[model_name], masked)
    J_ref, heads_ref = reference(model, x, mask)
    engine = JacobianEngine(model.shared_named_parameters(), mask, mode=producer)
    tp = _task_params(model)
    G, grads = engine.gramian(losses_of(model, x), tp)
    assert (grads.stacked is not None) == (producer == "batched")
    torch.testing.assert_close(G, J_ref @ J_ref.T, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(engine.assemble(grads.per_task), J_ref, rtol=1e-4, atol=1e-6)
    w = torch.tensor([0.5, -0.25, 2.0])
    engine.write_combination(grads, w)
    _check_grad_is(engine, w @ J_ref, mask)
    for k in range(K):
        for p, g in zip(tp[k], heads_ref[k]):
            torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-6)


def _check_grad_is(engine: JacobianEngine, d: torch.Tensor, mask: ParameterMask | None):
    """``.grad`` equals d on the trainable coordinates and is exactly 0 elsewhere."""
    for i, (name, p) in enumerate(zip(engine.names, engine.params)):
        size = engine.layout.sizes[i]
        if size == 0:
            assert p.grad is None
            continue
        m = torch.ones_like(p, dtype=torch.bool) if mask is None else mask.masks[name]
        part = d.narrow(0, engine.layout.offsets[i], size)
        torch.testing.assert_close(p.grad[m], part, rtol=1e-4, atol=1e-6)
        assert bool((p.grad[~m] == 0).all())


@pytest.mark.parametrize("masked", [False, True])
def test_scatter_and_weighted_write(masked):
    model, _x, mask, _ = _setup("mlp", "encoder.2.bias", masked)
    engine = JacobianEngine(model.shared_named_parameters(), mask)
    d = torch.randn(engine.n)
    engine.scatter(d)
    _check_grad_is(engine, d, mask)
    J = torch.randn(K, engine.n)
    w = torch.tensor([1.0, 0.0, -3.0])
    engine.write_weighted(J, w)
    _check_grad_is(engine, w @ J, mask)
    # a second write overwrites: no accumulation and frozen coordinates stay exactly 0
    engine.scatter(torch.zeros(engine.n))
    _check_grad_is(engine, torch.zeros(engine.n), mask)


@pytest.mark.parametrize("masked", [False, True])
def test_representation_gradients_and_backward(masked):
    model, x, mask, _ = _setup("mlp", None, masked)
    engine = JacobianEngine(model.shared_named_parameters(), mask)
    z = model.represent(x)
    Z = engine.representation(losses_of(model, x, z), z, _task_params(model))
    # reference: gradients w.r.t. a detached copy of z
    zd = z.detach().requires_grad_(True)
    ref = torch.stack([torch.autograd.grad(losses_of(model, x, zd)[k], zd)[0].reshape(-1)
                       for k in range(K)])
    torch.testing.assert_close(Z, ref, rtol=1e-4, atol=1e-6)
    w = torch.tensor([0.2, 0.3, 0.5])
    engine.backward_representation(z, w @ Z)
    J_ref, _ = reference(model, x, mask)
    _check_grad_is(engine, w @ J_ref, mask)  # chain rule: d(sum w_k L_k)/d theta


def test_probe_full_gradients_include_frozen_parameters():
    model, x, mask, frozen = _setup("mlp", "encoder.2.bias", True)
    engine = JacobianEngine(model.shared_named_parameters(), mask)
    result = engine.compute(losses_of(model, x), _task_params(model), full=True)
    i = engine.names.index(frozen)
    assert all(row[i] is not None for row in result.full_grads)
    g = torch.autograd.grad(losses_of(model, x)[1], engine.params[i])[0]
    torch.testing.assert_close(result.full_grads[1][i], g)


def test_check_gramian_names_tasks_and_detects_zero():
    G = torch.eye(3)
    G[1, 1] = float("nan")
    with pytest.raises(GradientError, match="task gradient for right"):
        check_gramian(G, ["left", "right", "mid"])
    assert check_gramian(torch.zeros(2, 2)) is True
    assert check_gramian(torch.eye(2)) is False


def test_all_finite_handles_overflowing_sums():
    big = torch.full((4,), 3e38)
    assert all_finite(big)  # the sum overflows, the entries do not
    big[2] = float("inf")
    assert not all_finite(big)


def test_unknown_mode_is_rejected():
    model, _ = mlp_model()
    with pytest.raises(ValueError, match="jacobian mode 'fast'"):
        JacobianEngine(model.shared_named_parameters(), mode="fast")


@pytest.mark.parametrize("masked", [False, True])
def test_gramian_pieces_cover_every_column(monkeypatch, masked):
    import mtlkit.jacobian as jac

    monkeypatch.setattr(jac, "CHUNK", 7)  # many pieces, ragged last one
    model, x, mask, _ = _setup("mlp", "encoder.2.bias", masked)
    J_ref, _ = reference(model, x, mask)
    engine = JacobianEngine(model.shared_named_parameters(), mask)
    G, kept = engine.gramian(losses_of(model, x), _task_params(model))
    torch.testing.assert_close(G, J_ref @ J_ref.T, rtol=1e-4, atol=1e-6)
    w = torch.tensor([1.5, -0.5, 0.25])
    engine.write_combination(kept, w)
    _check_grad_is(engine, w @ J_ref, mask)


def test_chunked_gramian_matches_one_product(monkeypatch):
    import mtlkit.aggregation as agg

    monkeypatch.setattr(agg, "GRAMIAN_CHUNK", 5)
    J = torch.randn(4, 23, dtype=torch.float64)
    torch.testing.assert_close(agg.gramian_matrix(J), J @ J.T)
