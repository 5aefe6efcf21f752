"""One check per aggregator property, plus the base guarantees every aggregator must meet.

Each ``check_*`` function takes an aggregator, a Jacobian ``J`` and (where relevant) the extra
input the property needs, and raises :class:`AssertionError` with a message that says what was
expected, what came back and by how much it missed. They are usable on their own (e.g. with
fixed matrices) and are what :func:`mtlkit.testing.check_aggregator` drives with hypothesis.

Tolerances are scale- and dtype-aware. With ``M = max_k ‖g_k‖`` and ``ρ = rtol(dtype)``
(1e-6 for float64, 2e-3 for float32 — a float32 Gramian of ``n = 1e4`` coordinates carries
~1e-5 relative error before any solver runs):

* vectors ``a ≈ b``: ``‖a - b‖ <= ρ · max(M, ‖a‖, ‖b‖)`` (plus ``1e-30`` absolute);
* ``non_conflicting``: ``g_k · d >= -ρ · ‖g_k‖ · max(M, ‖d‖)`` for every task ``k``;
* ``weighted``: the component of ``d`` outside the row space of ``J`` (SVD basis with a
  relative cut-off) is ``<= ρ · max(M, ‖d‖)``;
* ``linear_under_scaling``: ``‖x - (α x1 + β x2)‖ <= ρ · (‖x‖ + α‖x1‖ + β‖x2‖ + M_c)`` with
  ``M_c`` the largest row norm of ``diag(α c1 + β c2) J``.

Every call gets a *fresh* context (:func:`make_context`): the same seeded generator, positive
losses (for loss-level methods), ``step = epoch = 0``; stateful aggregators are reset first, so
two calls on the same input are comparable.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from mtlkit.aggregation import PROPERTIES, Aggregator, gramian_matrix
from mtlkit.errors import GradientError

BASE_CHECKS = ("structure", "deterministic", "single_task", "all_zero", "non_finite",
               "gramian_context", "non_differentiable")


def rtol(dtype: torch.dtype) -> float:
    return 1e-6 if dtype == torch.float64 else 2e-3


def make_context(K: int, seed: int = 0, losses: torch.Tensor | None = None) -> dict[str, Any]:
    """A fresh, deterministic context for one call on a ``K``-task input."""
    if losses is None:
        g = torch.Generator().manual_seed(10_000 + seed)
        losses = 0.1 + torch.rand(K, generator=g, dtype=torch.float64)
    return {"losses": losses, "step": 0, "epoch": 0,
            "task_names": [f"task{k}" for k in range(K)],
            "generator": torch.Generator().manual_seed(seed)}


def run(agg: Aggregator, J: torch.Tensor, context: dict[str, Any] | None = None,
        seed: int = 0) -> torch.Tensor:
    """Call ``agg`` on ``J`` the way every check does: reset if stateful, fresh context."""
    if getattr(agg, "stateful", False):
        agg.reset()
    ctx = make_context(J.shape[0], seed) if context is None else context
    return agg(J, **ctx)


def _scale(J: torch.Tensor, *ds: torch.Tensor) -> float:
    M = float(J.double().norm(dim=1).max()) if J.numel() else 0.0
    return max([M, *(float(d.double().norm()) for d in ds)])


def _describe(J: torch.Tensor) -> str:
    dt = str(J.dtype).replace("torch.", "")
    text = f"J of shape {tuple(J.shape)} ({dt}, max row norm {_scale(J):.3g})"
    if J.numel() <= 24:
        text += f" = {J.tolist()}"
    return text


def assert_close(a: torch.Tensor, b: torch.Tensor, J: torch.Tensor, what: str) -> None:
    err = float((a.double() - b.double()).norm())
    tol = rtol(J.dtype) * _scale(J, a, b) + 1e-30
    if not err <= tol:
        raise AssertionError(f"{what}: ‖difference‖ = {err:.3g} > tolerance {tol:.3g} for "
                             f"{_describe(J)}")


# -- base guarantees ------------------------------------------------------------------------


def check_structure(agg: Aggregator, J: torch.Tensor) -> torch.Tensor:
    """The result is a finite ``[n]`` tensor of ``J``'s dtype."""
    d = run(agg, J)
    if not isinstance(d, torch.Tensor):
        raise AssertionError(f"returned {type(d).__name__}, expected a tensor, for {_describe(J)}")
    if d.shape != (J.shape[1],):
        raise AssertionError(f"returned shape {tuple(d.shape)}, expected ({J.shape[1]},) for "
                             f"{_describe(J)}")
    if d.dtype != J.dtype:
        raise AssertionError(f"returned dtype {d.dtype}, expected {J.dtype}")
    if not bool(torch.isfinite(d).all()):
        raise AssertionError(f"returned a non-finite direction for {_describe(J)}")
    return d


def check_deterministic(agg: Aggregator, J: torch.Tensor) -> None:
    """Two calls with the same input and the same (fresh) context agree."""
    assert_close(run(agg, J), run(agg, J), J, "two identical calls disagree")


def check_single_task(agg: Aggregator, J: torch.Tensor) -> None:
    """``K = 1`` returns that task's gradient."""
    row = J[:1]
    d = run(agg, row)
    assert_close(d, row[0], row, "K = 1 must return the task's own gradient")


def check_all_zero(agg: Aggregator, J: torch.Tensor) -> None:
    """An all-zero Jacobian gives the zero direction."""
    Z = torch.zeros_like(J)
    d = run(agg, Z)
    if bool(d.any()):
        raise AssertionError(f"all-zero J of shape {tuple(J.shape)} gave a non-zero direction")


def check_non_finite(agg: Aggregator, J: torch.Tensor) -> None:
    """NaN or Inf anywhere raises :class:`GradientError` (never a silent NaN update)."""
    for bad in (math.nan, math.inf, -math.inf):
        Jb = J.clone()
        Jb[J.shape[0] // 2, J.shape[1] // 2] = bad
        try:
            d = run(agg, Jb)
        except GradientError:
            continue
        raise AssertionError(f"a {bad} entry did not raise GradientError (returned "
                             f"{'non-finite' if not bool(torch.isfinite(d).all()) else 'finite'}"
                             f" values) for {_describe(J)}")


def check_gramian_context(agg: Aggregator, J: torch.Tensor) -> None:
    """The Gramian passed in the context is used, and gives the same result as computing it.

    A context Gramian equal to ``J J^T`` cannot tell "used" from "ignored": it is bit for bit
    what the aggregator would compute itself (and a differently rounded one differs by far less
    than the tolerance). So the call gets ``[J, E]``, ``J`` with extra coordinates ``E`` (``J``
    with random signs: same row norms, other dot products), and ``context['gramian'] = J J^T``.
    A ``requires = "gramian"`` aggregator forms ``d = w(G)^T J`` from the Gramian it is given,
    so the first ``n`` coordinates must equal ``agg(J)``; one that recomputes ``G`` from its
    input weights by ``J J^T + E E^T`` instead.
    """
    if getattr(agg, "requires", "jacobian") != "gramian":
        return
    K, n = J.shape
    signs = torch.randint(0, 2, (K, n), generator=torch.Generator().manual_seed(0))
    wide = torch.cat([J, J * (2 * signs - 1).to(J.dtype)], dim=1)
    ctx = make_context(K)
    ctx["gramian"] = gramian_matrix(J)
    assert_close(run(agg, wide, ctx)[:n], run(agg, J), J,
                 "with context['gramian'] = J J^T and extra coordinates appended to J, the first "
                 "n coordinates differ from agg(J): the context Gramian is ignored or misused")


def check_non_differentiable(agg: Aggregator, J: torch.Tensor) -> None:
    """With ``J`` requiring grad, the result carries no autograd graph (it is data for
    ``.grad``; a graph would keep the solve's intermediates alive)."""
    for rows in (J, J[:1]):  # the aggregation and the K = 1 short-cut
        Jg = rows.detach().clone().requires_grad_(True)
        d = run(agg, Jg)
        if d.requires_grad or d.grad_fn is not None:
            raise AssertionError(f"the result requires grad (grad_fn {d.grad_fn}) for a J that "
                                 f"requires grad: {_describe(rows)}; return a detached tensor")


# -- claimed properties ---------------------------------------------------------------------


def check_non_conflicting(agg: Aggregator, J: torch.Tensor) -> None:
    """``g_k · d >= -tol`` for every task: no task's loss increases to first order."""
    d = run(agg, J)
    Jd = J.double() @ d.double()
    norms = J.double().norm(dim=1)
    tol = rtol(J.dtype) * norms * _scale(J, d)
    bad = (Jd < -tol).nonzero().flatten().tolist()
    if bad:
        k = bad[0]
        raise AssertionError(
            f"conflicts with task {k}: g_{k}·d = {float(Jd[k]):.3g} < -tolerance "
            f"{float(tol[k]):.3g} (cosine {float(Jd[k] / (norms[k] * d.double().norm())):.3g}) "
            f"for {_describe(J)}")


def check_permutation_invariant(agg: Aggregator, J: torch.Tensor,
                                perm: torch.Tensor | None = None) -> None:
    """Permuting the rows (and the losses) leaves ``d`` unchanged."""
    K = J.shape[0]
    if perm is None:
        perm = torch.arange(K - 1, -1, -1)
    ctx = make_context(K)
    ctx_p = make_context(K, losses=ctx["losses"][perm])
    assert_close(run(agg, J[perm], ctx_p), run(agg, J, ctx), J,
                 f"rows permuted by {perm.tolist()} changed the direction")


def check_positively_homogeneous(agg: Aggregator, J: torch.Tensor, a: float = 3.0) -> None:
    """``agg(a J) = a agg(J)`` for a scalar ``a > 0``."""
    d = run(agg, J)
    da = run(agg, J * a)
    assert_close(da / a, d, J, f"agg({a:g} J) / {a:g} differs from agg(J)")


def check_linear_under_scaling(agg: Aggregator, J: torch.Tensor,
                               c1: torch.Tensor | None = None, c2: torch.Tensor | None = None,
                               alpha: float = 0.7, beta: float = 1.6) -> None:
    """Row-wise: ``agg(diag(α c1 + β c2) J) = α agg(diag(c1) J) + β agg(diag(c2) J)`` for
    positive row factors ``c1, c2`` and ``α, β > 0``. Default factors: ``c1 = 1``,
    ``c2 = (1, 2, ..., K)``."""
    K = J.shape[0]
    if c1 is None:
        c1 = torch.ones(K, dtype=torch.float64)
    if c2 is None:
        c2 = torch.arange(1, K + 1, dtype=torch.float64)
    if not (bool((c1 > 0).all()) and bool((c2 > 0).all()) and alpha > 0 and beta > 0):
        raise ValueError("check_linear_under_scaling needs positive c1, c2, alpha, beta")
    c = alpha * c1 + beta * c2
    scaled = [(J.double() * v.double()[:, None]).to(J.dtype) for v in (c1, c2, c)]
    x1, x2, x = (run(agg, Js) for Js in scaled)
    expected = alpha * x1.double() + beta * x2.double()
    err = float((x.double() - expected).norm())
    size = (float(x.double().norm()) + alpha * float(x1.double().norm())
            + beta * float(x2.double().norm()) + _scale(scaled[2]))
    tol = rtol(J.dtype) * size + 1e-30
    if not err <= tol:
        raise AssertionError(
            f"agg(diag({alpha:g} c1 + {beta:g} c2) J) differs from {alpha:g} agg(diag(c1) J) + "
            f"{beta:g} agg(diag(c2) J): ‖difference‖ = {err:.3g} > tolerance {tol:.3g} "
            f"(c1 = {[round(float(v), 3) for v in c1]}, c2 = "
            f"{[round(float(v), 3) for v in c2]}) for {_describe(J)}")


def check_weighted(agg: Aggregator, J: torch.Tensor) -> None:
    """``d`` lies in the row span of ``J``."""
    d = run(agg, J).double()
    Jd = J.double()
    _, S, Vh = torch.linalg.svd(Jd, full_matrices=False)
    keep = S.max() * 1e-12 < S if S.numel() and float(S.max()) > 0 else S > 0
    basis = Vh[keep]
    outside = d - basis.T @ (basis @ d)
    err = float(outside.norm())
    tol = rtol(J.dtype) * _scale(J, d) + 1e-30
    if not err <= tol:
        raise AssertionError(f"direction leaves the row span of J by {err:.3g} > tolerance "
                             f"{tol:.3g} for {_describe(J)}")


def check_conflict_only(agg: Aggregator, J: torch.Tensor) -> None:
    """Without any conflicting pair the result is the mean. ``J`` must have none."""
    G = J.double() @ J.double().T
    if bool((G < 0).any()):
        raise ValueError("check_conflict_only needs a Jacobian without conflicting pairs")
    assert_close(run(agg, J), J.double().mean(dim=0).to(J.dtype), J,
                 "no pair conflicts, yet the direction is not the mean")


PROPERTY_CHECKS: dict[str, Callable[..., None]] = {
    "non_conflicting": check_non_conflicting,
    "permutation_invariant": check_permutation_invariant,
    "positively_homogeneous": check_positively_homogeneous,
    "linear_under_scaling": check_linear_under_scaling,
    "weighted": check_weighted,
    "conflict_only": check_conflict_only,
}
assert set(PROPERTY_CHECKS) == set(PROPERTIES)

BASE: dict[str, Callable[[Aggregator, torch.Tensor], Any]] = {
    "structure": check_structure,
    "deterministic": check_deterministic,
    "single_task": check_single_task,
    "all_zero": check_all_zero,
    "non_finite": check_non_finite,
    "gramian_context": check_gramian_context,
    "non_differentiable": check_non_differentiable,
}
