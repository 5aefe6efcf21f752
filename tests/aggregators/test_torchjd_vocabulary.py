"""The field's property vocabulary, as TorchJD's own aggregator tests assert it: every mtlkit
aggregator that declares a property passes TorchJD's check of it, with TorchJD's tolerances,
on TorchJD's families of test matrices (random normal matrices of given rank, and matrices with
a positive left-singular vector), and returns a result without an autograd graph.

The checks and matrix families are re-stated here from the published definitions (Quinton &
Rey 2024): non-conflicting ``||(J d)_+|| = ||J d||``; permutation invariant; linear under
scaling ``A(diag(a c1 + b c2) J) = a A(diag(c1) J) + b A(diag(c2) J)``."""

from __future__ import annotations

import pytest
import torch
from torch.nn.functional import normalize
from torch.testing import assert_close

import mtlkit

SHAPES = [(4, 3, 1), (4, 3, 2), (4, 3, 3), (9, 11, 5), (9, 11, 9), (2, 1000, 2), (5, 100, 5),
          (12, 30, 12)]


def _orthonormal(dim: int, g: torch.Generator) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g))
    return q


def normal_matrix(m: int, n: int, rank: int, g: torch.Generator) -> torch.Tensor:
    s = torch.diag(torch.randn(rank, generator=g).abs())
    return _orthonormal(m, g)[:, :rank] @ s @ _orthonormal(n, g)[:rank, :]


def non_weak_matrix(m: int, n: int, rank: int, g: torch.Generator) -> torch.Tensor:
    """A positive left-singular vector: no non-negative combination of the rows vanishes."""
    u = normalize(torch.randn(m, generator=g).abs(), dim=0).unsqueeze(1)
    rest = torch.randn(m, m - 1, generator=g)
    q, _ = torch.linalg.qr(rest - u @ (u.T @ rest))
    s = torch.diag(torch.randn(rank, generator=g).abs())
    return torch.hstack([u, q])[:, :rank] @ s @ _orthonormal(n, g)[:rank, :]


def matrices():
    g = torch.Generator().manual_seed(0)
    return [make(*shape, g) for shape in SHAPES for make in (normal_matrix, non_weak_matrix)]


#: parameters that make a method defined for every K >= 2 of the families above
PARAMS = {"constant": None, "krum": None, "trimmed_mean": {"beta": 0.25}}
JACOBIAN_LEVEL = [n for n in mtlkit.get_plugin_manager().names("aggregator")
                  if n not in ("constant", "krum")]


def run(name: str, J: torch.Tensor) -> torch.Tensor:
    agg = mtlkit.get_aggregator(name, **(PARAMS.get(name) or {}))
    K = J.shape[0]
    ctx = {"task_names": [f"t{i}" for i in range(K)], "losses": torch.ones(K),
           "generator": torch.Generator().manual_seed(0), "step": 0, "epoch": 0}
    agg.configure(K)
    return agg(J, **ctx)


@pytest.mark.parametrize("name", JACOBIAN_LEVEL)
def test_declared_properties_hold_as_torchjd_asserts_them(name):
    props = mtlkit.get_aggregator(name, **(PARAMS.get(name) or {})).properties
    g = torch.Generator().manual_seed(1)
    for J in matrices():
        d = run(name, J)
        assert d.shape == J.shape[1:] and torch.isfinite(d).all()
        if "non_conflicting" in props:
            out = J @ d
            assert_close(out[out >= 0].norm(), out.norm(), atol=4e-4, rtol=4e-4)
        if "permutation_invariant" in props:
            for _ in range(3):
                perm = torch.randperm(J.shape[0], generator=g)
                assert_close(run(name, J[perm]), d, atol=1e-4, rtol=1e-4)
        if "linear_under_scaling" in props:
            for _ in range(3):
                c1, c2 = torch.rand(J.shape[0], generator=g), torch.rand(J.shape[0], generator=g)
                a, b = torch.rand((), generator=g), torch.rand((), generator=g)
                expected = a * run(name, torch.diag(c1) @ J) + b * run(name, torch.diag(c2) @ J)
                assert_close(run(name, torch.diag(a * c1 + b * c2) @ J), expected,
                             atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", JACOBIAN_LEVEL)
def test_result_carries_no_graph_when_J_requires_grad(name):
    J = normal_matrix(4, 6, 3, torch.Generator().manual_seed(2)).requires_grad_()
    assert not run(name, J).requires_grad
