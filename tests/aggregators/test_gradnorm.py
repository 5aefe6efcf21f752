"""GradNorm against Alg. 1 of the paper run with autograd on a tiny network: the weighted
gradient norms on the last shared layer, the detached target, L_grad's gradient, the
renormalisation."""

import pytest
import torch

import mtlkit
from mtlkit.errors import ConfigError, GradientError
from mtlkit.probing import ParamLayout
from mtlkit.testing import checks_for, run_check
from tests.aggregators.helpers import agg


def layout_of(module: torch.nn.Module, masked: frozenset[str] = frozenset()) -> ParamLayout:
    names, shapes, full, sizes = [], [], [], []
    for name, p in module.named_parameters():
        names.append(name)
        shapes.append(tuple(p.shape))
        full.append(p.numel())
        sizes.append(0 if name in masked else p.numel())
    offsets = [sum(sizes[:i]) for i in range(len(sizes))]
    full_offsets = [sum(full[:i]) for i in range(len(full))]
    return ParamLayout(names, shapes, full_offsets, full, offsets, sizes)


def tiny_problem(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    shared = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 4))
    heads = [torch.nn.Linear(4, 1) for _ in range(3)]
    with torch.no_grad():
        for p in [*shared.parameters(), *(q for h in heads for q in h.parameters())]:
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype))
    shared.double()
    for h in heads:
        h.double()

    def losses(batch: int) -> list[torch.Tensor]:
        gb = torch.Generator().manual_seed(100 + batch)
        x = torch.randn(8, 3, generator=gb, dtype=torch.float64)
        z = shared(x)
        return [((h(z).squeeze(1) - (k + 1.0)) ** 2).mean() * (k + 1) for k, h in enumerate(heads)]

    return shared, losses


def jacobian(shared: torch.nn.Module, Ls: list[torch.Tensor]) -> torch.Tensor:
    params = list(shared.parameters())
    rows = [torch.cat([g.reshape(-1) for g in torch.autograd.grad(L, params,
                                                                   retain_graph=True)])
            for L in Ls]
    return torch.stack(rows)


#: float32 weights of size <= K = 3, renormalised by a float32 sum: 8 ulps of 3
F32_ATOL = 8 * torch.finfo(torch.float32).eps * 3


@pytest.mark.parametrize("layer", [None, "2", "2.weight", "0"])
def test_gradnorm_follows_algorithm_1(layer):
    alpha, lr = 1.5, 5e-4
    shared, losses = tiny_problem()
    layout = layout_of(shared)
    chosen = {None: ["2.weight", "2.bias"], "2": ["2.weight", "2.bias"],
              "2.weight": ["2.weight"], "0": ["0.weight", "0.bias"]}[layer]
    W = [p for n, p in shared.named_parameters() if n in chosen]
    a = agg("gradnorm", alpha=alpha, layer=layer, num_tasks=3)
    (w,) = a.parameters()
    w_ref = torch.ones(3, dtype=torch.float64, requires_grad=True)
    L0 = None
    for step in range(3):
        Ls = losses(step)
        L = torch.stack(Ls)
        L0 = L.detach() if L0 is None else L0
        # the paper: G_k = ‖∇_W w_k L_k‖ by autograd, target detached, L_grad backward
        G = torch.stack([torch.cat([g.reshape(-1) for g in torch.autograd.grad(
            w_ref[k] * Ls[k], W, retain_graph=True, create_graph=True)]).norm()
            for k in range(3)])
        r = (L.detach() / L0) / (L.detach() / L0).mean()
        L_grad = (G - (G.mean() * r**alpha).detach()).abs().sum()
        (g_ref,) = torch.autograd.grad(L_grad, [w_ref])
        J = jacobian(shared, Ls)
        d = a(J, losses=L.detach(), layout=layout, step=step)
        # w.grad is float32: its rounding (6e-8 relative) bounds the match
        assert torch.allclose(w.grad.double(), g_ref, rtol=1e-6, atol=0)
        # d = wᵀJ with the weights as stored (w vs w_ref is checked after the step)
        assert torch.allclose(d, w.detach().double() @ J, rtol=1e-12, atol=0)
        # one SGD step on the weights, then Alg. 1's renormalisation to Σ w = K
        with torch.no_grad():
            w -= lr * w.grad
            w_ref -= lr * g_ref
            w_ref *= 3 / w_ref.sum()
        w.grad = None
        a.after_step({})
        # w is stored in float32: a few ulps of the largest weight (<= K) per step
        assert torch.allclose(w.detach().double(), w_ref.detach(), rtol=0, atol=F32_ATOL)
        assert abs(float(w.detach().sum()) - 3) < F32_ATOL
    assert float((w_ref.detach() - 1).abs().max()) > 1e-3  # the weights moved
    a.reset()
    assert w.grad is None and bool((w == 1).all()) and a._initial_losses is None


def test_gradnorm_default_layer_skips_a_fully_masked_last_layer():
    shared, losses = tiny_problem()
    full = layout_of(shared)
    masked = layout_of(shared, frozenset({"2.weight", "2.bias"}))
    Ls = losses(0)
    J = jacobian(shared, Ls)
    a = agg("gradnorm")
    assert a.columns(full, J.shape[1]) == slice(15 + 5, 15 + 5 + 20 + 4)
    assert a.columns(masked, 20) == slice(0, 20)  # layer "0" is then the last shared one
    with pytest.raises(ConfigError, match="no trainable coordinates"):
        agg("gradnorm", layer="2").columns(masked, 20)


def test_gradnorm_non_contiguous_layer_columns():
    layout = ParamLayout(["a.weight", "b.weight", "a.bias"], [(2,), (3,), (1,)], [0, 2, 5],
                         [2, 3, 1], [0, 2, 5], [2, 3, 1])
    cols = agg("gradnorm", layer="a").columns(layout, 6)
    assert cols.tolist() == [0, 1, 5]


def test_gradnorm_bad_configuration_and_input():
    J = torch.randn(2, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ConfigError, match="num_tasks"):
        agg("gradnorm").parameters()
    with pytest.raises(ConfigError, match="alpha"):
        agg("gradnorm", alpha=-1.0)
    with pytest.raises(ConfigError, match="layout"):
        agg("gradnorm", layer="enc")(J, losses=torch.ones(2))
    shared, _ = tiny_problem()
    with pytest.raises(ConfigError, match="not a shared parameter"):
        agg("gradnorm", layer="nope")(torch.ones(3, 44, dtype=torch.float64),
                                      losses=torch.ones(3), layout=layout_of(shared))
    with pytest.raises(ConfigError, match="44 trainable coordinates but J has 6 columns"):
        agg("gradnorm")(J, losses=torch.ones(2), layout=layout_of(shared))
    with pytest.raises(ConfigError, match="losses"):
        agg("gradnorm")(J)
    with pytest.raises(GradientError, match="positive initial losses"):
        agg("gradnorm")(J, losses=torch.tensor([0.0, 1.0]))
    a = agg("gradnorm", num_tasks=2)
    with torch.no_grad():
        a.task_weights.copy_(torch.tensor([2.5, -0.5]))
    with pytest.raises(GradientError, match="lower the learning rate"):
        a.after_step({})


@pytest.mark.parametrize("check", checks_for(lambda: agg("gradnorm")))
def test_gradnorm_kit(check):
    torch.set_num_threads(1)
    run_check(lambda: agg("gradnorm"), check, max_examples=8, max_tasks=12, max_dim=500)


def test_gradnorm_through_the_engine_reads_the_layout_and_renormalises():
    from tests.engine.test_backward import TwoHeads, data, losses_of, reference

    torch.manual_seed(0)
    model = TwoHeads().double()
    a = agg("gradnorm", num_tasks=3)
    opt = torch.optim.SGD([*model.parameters(), *a.parameters()], lr=1e-3)
    mtl = mtlkit.MTLBackward(model.trunk, a, optimizer=opt)
    x, ys = data()
    x, ys = x.double(), {t: y.double() for t, y in ys.items()}
    J, _d, _own = reference(model, x, ys, "mean")
    opt.zero_grad()
    mtl.backward(losses_of(model, x, ys))
    # the last shared layer with parameters is trunk "2" (Linear(12, 8)): columns 84..187
    norms = J[:, 84:].norm(dim=1)
    expected = torch.sign(norms - norms.mean()) * norms  # step 1: r = 1, w = 1
    assert torch.allclose(a.task_weights.grad.double(), expected, rtol=1e-6)
    opt.step()  # the engine's step hook runs after_step: the renormalisation
    assert abs(float(a.task_weights.detach().sum()) - 3) < F32_ATOL
    assert not torch.allclose(a.task_weights.detach(), torch.ones(3))
