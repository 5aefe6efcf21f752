"""AutogramEngine: G = J J^T and w^T J without J, against explicit per-task autograd gradients.

The reference differentiates each task's loss w.r.t. every shared parameter with
``torch.autograd.grad`` (independent of the layer formulas under test). float64 cases use a
tight tolerance (a few hundred ulps of the norms involved); the float32 case uses the
deterministic dot-product bound ``n * eps * |g_k| |g_l|`` with ``n`` the longest chain of
sums involved, so it holds on any BLAS, thread count and CPU.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from mtlkit.engine.autogram import AutogramEngine, route_costs
from mtlkit.errors import ConfigError

K = 3


class Net(nn.Module):
    def __init__(self, encoder: nn.Module, width: int, heads: int = K) -> None:
        super().__init__()
        self.encoder = encoder
        self.heads = nn.ModuleList(nn.Linear(width, 2) for _ in range(heads))

    def forward(self, x):
        z = self.encoder(x)
        return [h(z) for h in self.heads]


def mlp(d_in=7, h1=9, h2=5):
    return Net(nn.Sequential(nn.Linear(d_in, h1), nn.ReLU(), nn.Linear(h1, h2), nn.Tanh()), h2)


def lenet():
    enc = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(3, 4, 3, stride=1, padding=1, dilation=1), nn.ReLU(),
                        nn.Conv2d(4, 4, 2, stride=2, bias=False), nn.ReLU(),
                        nn.Flatten(), nn.Linear(4 * 2 * 2, 6), nn.ReLU())
    return Net(enc, 6)


def losses_of(net, x, targets):
    return [((o - t) ** 2).mean() * (k + 1) for k, (o, t) in enumerate(zip(net(x), targets))]


def reference(net, x, targets):
    """Explicit rows of J (shared parameters) and each head's own gradient."""
    shared = list(net.encoder.parameters())
    rows, heads = [], []
    for k, loss in enumerate(losses_of(net, x, targets)):
        own = list(net.heads[k].parameters())
        g = torch.autograd.grad(loss, shared + own, retain_graph=True)
        rows.append(torch.cat([t.reshape(-1) for t in g[:len(shared)]]))
        heads.append(g[len(shared):])
    return torch.stack(rows), heads


def engine_step(net, x, targets, w, **kw):
    eng = AutogramEngine(net, list(net.encoder.named_parameters()), **kw)
    G = eng.gramian(losses_of(net, x, targets), [list(h.parameters()) for h in net.heads])
    eng.write_combination(w)
    d = torch.cat([p.grad.reshape(-1) for p in net.encoder.parameters()])
    return eng, G, d


def data(net_kind, dtype, B=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((B, 7) if net_kind == "mlp" else (B, 1, 10, 10), generator=g, dtype=dtype)
    targets = [torch.randn(B, 2, generator=g, dtype=dtype) for _ in range(K)]
    return x, targets


@pytest.mark.parametrize("kind", ["mlp", "lenet"])
@pytest.mark.parametrize("route", [None, "gram", "explicit"])
def test_float64_matches_explicit_gramian_update_and_heads(kind, route):
    torch.manual_seed(0)
    net = (mlp() if kind == "mlp" else lenet()).double()
    x, targets = data(kind, torch.float64)
    J, head_grads = reference(net, x, targets)
    w = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    eng, G, d = engine_step(net, x, targets, w, route=route)
    scale = J.norm(dim=1)
    tol = 1e-12 * torch.outer(scale, scale)
    assert torch.all((G - J @ J.T).abs() <= tol), (G, J @ J.T)
    assert torch.allclose(d, w @ J, rtol=0, atol=1e-12 * float((w.abs() @ J.abs()).max()))
    for k, h in enumerate(net.heads):  # own, unweighted task gradient
        for p, ref in zip(h.parameters(), head_grads[k]):
            assert torch.allclose(p.grad, ref, rtol=1e-12, atol=1e-14)
    routes = eng.describe()
    if kind == "lenet":  # BatchNorm's affine parameters are not a Linear/Conv2d: autograd
        assert routes["1.weight"] == "fallback" and routes["0.weight"] != "fallback"
    if route is not None:
        assert routes["0.weight"] == route


def test_float32_within_dot_product_bound():
    torch.manual_seed(1)
    net = mlp(d_in=20, h1=30, h2=10)
    x, targets = data("mlp", torch.float32, B=16)
    x = torch.randn(16, 20)
    ref_net = copy.deepcopy(net).double()
    J, _ = reference(ref_net, x.double(), [t.double() for t in targets])
    w = torch.tensor([1.0, 0.25, -0.5])
    for route in ("gram", "explicit"):
        _, G, d = engine_step(copy.deepcopy(net), x, targets, w, route=route)
        # longest summation chain: forward/backward through the widths, then the Gram sums
        n = 20 + 30 + 10 + 16 * 30 + 16
        eps = torch.finfo(torch.float32).eps
        norms = J.norm(dim=1)
        assert torch.all((G.double() - J @ J.T).abs() <= n * eps * torch.outer(norms, norms))
        bound = n * eps * (w.double().abs() @ J.abs()).max()
        assert (d.double() - w.double() @ J).abs().max() <= bound


def test_masks_restrict_gramian_and_zero_frozen_coordinates():
    torch.manual_seed(2)
    net = mlp().double()
    x, targets = data("mlp", torch.float64)
    names = [n for n, _ in net.encoder.named_parameters()]
    g = torch.Generator().manual_seed(3)
    masks = {n: torch.rand(p.shape, generator=g) < 0.5 for n, p in net.encoder.named_parameters()}
    masks[names[1]] = torch.zeros_like(masks[names[1]])  # a fully frozen bias
    J, _ = reference(net, x, targets)
    keep = torch.cat([masks[n].reshape(-1) for n in names])
    Jm = J[:, keep]
    w = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    eng = AutogramEngine(net, list(net.encoder.named_parameters()), masks=masks)
    G = eng.gramian(losses_of(net, x, targets), [list(h.parameters()) for h in net.heads])
    eng.write_combination(w)
    scale = Jm.norm(dim=1)
    assert torch.all((G - Jm @ Jm.T).abs() <= 1e-12 * torch.outer(scale, scale))
    params = dict(net.encoder.named_parameters())
    assert params[names[1]].grad is None
    d = torch.cat([(params[n].grad if params[n].grad is not None else
                    torch.zeros_like(params[n])).reshape(-1) for n in names])
    assert torch.all(d[~keep] == 0)
    assert torch.allclose(d[keep], w @ Jm, rtol=1e-12, atol=1e-13)


def test_weight_sharing_3d_inputs_and_stacked_losses():
    torch.manual_seed(4)

    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 4)

        def forward(self, x):  # the same layer twice, on [B, T, 4] tokens
            return torch.tanh(self.lin(torch.tanh(self.lin(x)))).mean(1)

    net = Net(Shared(), 4).double()
    x = torch.randn(5, 3, 4, dtype=torch.float64)
    targets = [torch.randn(5, 2, dtype=torch.float64) for _ in range(K)]
    J, _ = reference(net, x, targets)
    eng = AutogramEngine(net, list(net.encoder.named_parameters()))
    G = eng.gramian(torch.stack(losses_of(net, x, targets)))
    scale = J.norm(dim=1)
    assert torch.all((G - J @ J.T).abs() <= 1e-12 * torch.outer(scale, scale))
    assert eng.describe()["lin.weight"] in ("gram", "explicit")


def test_inplace_activation_is_a_clear_error_and_close_removes_hooks():
    net = Net(nn.Sequential(nn.Linear(3, 4), nn.ReLU(inplace=True)), 4)
    eng = AutogramEngine(net, list(net.encoder.named_parameters()))
    x = torch.randn(2, 3)
    with pytest.raises(ConfigError, match="in place"):
        eng.gramian(losses_of(net, x, [torch.randn(2, 2) for _ in range(K)]))
    eng.close()
    net(x)
    assert all(not lay.outputs for lay in eng.layers)


def test_route_costs_pick_gram_for_small_batches_only():
    mlp_layer = route_costs(N=256, fan_in=784, out=1024, K=40)
    assert mlp_layer["gram"] < mlp_layer["explicit"]
    conv_layer = route_costs(N=256 * 576, fan_in=25, out=10, K=2)  # LeNet conv1, batch 256
    assert conv_layer["explicit"] < conv_layer["gram"]
    with pytest.raises(ConfigError, match="route"):
        AutogramEngine(nn.Linear(2, 2), [], route="fast")  # type: ignore[arg-type]
