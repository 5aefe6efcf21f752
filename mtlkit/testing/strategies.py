"""Hypothesis strategies for aggregator inputs: task Jacobians ``J`` of shape ``[K, n]``.

Hypothesis draws the *recipe* (K, n, rank, structure, scales, dtype and a seed); the matrix is
then built with a seeded torch generator. Shrinking therefore works on the recipe (smaller K and
n, simpler structure, scale 1) and every example is reproducible from its recipe, which the
failure messages of :mod:`mtlkit.testing` print.

Structures:

``random``      Gaussian rows (rank ``min(K, n)``);
``low_rank``    ``J = A B`` with a drawn rank ``r < min(K, n)``;
``conflicting`` rows around a shared direction with alternating signs (many cos < 0 pairs);
``aligned``     no conflicting pair (every pairwise dot product ``>= 0``);
``zero_rows``   some rows exactly zero;
``duplicate``   some rows repeated exactly;
``collinear``   some rows positive or negative multiples of another row.

Row scalings (for ``linear_under_scaling``): :func:`row_scalings` draws a
:class:`RowScaling`, two positive factor vectors ``c1, c2`` (log-uniform within ``decades``
around 1, built for the drawn ``K``) and positive ``α, β``.

Scales: a global factor ``10^e``, ``e`` in ``[log10(min_scale), log10(max_scale)]`` (default
1e-8..1e8), times optional per-row factors within ``row_spread`` decades.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import attrs
import torch
from hypothesis import strategies as st

STRUCTURES = ("random", "low_rank", "conflicting", "aligned", "zero_rows", "duplicate",
              "collinear")
DTYPES = (torch.float64, torch.float32)


@attrs.frozen
class JacobianRecipe:
    """Everything needed to rebuild one drawn Jacobian (printed in failure messages)."""

    K: int
    n: int
    structure: str
    rank: int
    log_scale: float
    row_log_scales: tuple[float, ...]
    dtype: torch.dtype
    seed: int

    def build(self) -> torch.Tensor:
        return build_jacobian(self)

    def __str__(self) -> str:
        dt = str(self.dtype).replace("torch.", "")
        return (f"JacobianRecipe(K={self.K}, n={self.n}, structure={self.structure!r}, "
                f"rank={self.rank}, scale=1e{self.log_scale:+.2f}, dtype={dt}, "
                f"seed={self.seed})")


def build_jacobian(r: JacobianRecipe) -> torch.Tensor:
    g = torch.Generator().manual_seed(r.seed)
    K, n = r.K, r.n
    J: torch.Tensor
    if r.structure == "low_rank":
        J = torch.randn(K, r.rank, generator=g, dtype=torch.float64) @ torch.randn(
            r.rank, n, generator=g, dtype=torch.float64)
    elif r.structure == "conflicting":
        base = torch.randn(n, generator=g, dtype=torch.float64)
        signs = torch.tensor([1.0 if k % 2 == 0 else -1.0 for k in range(K)],
                             dtype=torch.float64)
        J = signs[:, None] * base[None, :] + 0.5 * torch.randn(K, n, generator=g,
                                                                 dtype=torch.float64)
    elif r.structure == "aligned":
        # Non-negative rows have non-negative dot products; one shared sign flip per
        # coordinate keeps every dot product while hiding the orthant.
        J = torch.rand(K, n, generator=g, dtype=torch.float64)
        flip = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0).to(torch.float64)
        J = J * flip
    else:
        J = torch.randn(K, n, generator=g, dtype=torch.float64)
    # positive row factors: they change norms, never signs (``aligned`` stays aligned)
    row = torch.tensor([10.0**s for s in r.row_log_scales], dtype=torch.float64)
    J = J * row[:, None] * 10.0**r.log_scale
    # structural edits last, so that duplicates are exact copies after scaling
    if K >= 2 and r.structure in ("zero_rows", "duplicate", "collinear"):
        picks = torch.randperm(K, generator=g).tolist()
        count = max(1, K // 3)
        for i in picks[:count]:
            src = picks[-1]
            if r.structure == "zero_rows":
                J[i] = 0.0
            elif r.structure == "duplicate":
                J[i] = J[src]
            else:
                factor = float(torch.empty(1).uniform_(0.2, 3.0, generator=g))
                sign = -1.0 if float(torch.rand(1, generator=g)) < 0.5 else 1.0
                J[i] = sign * factor * J[src]
    return J.to(r.dtype)


@st.composite
def jacobian_recipes(
    draw: Any,
    *,
    min_tasks: int = 1,
    max_tasks: int = 40,
    max_dim: int = 10_000,
    structures: Sequence[str] = STRUCTURES,
    dtypes: Sequence[torch.dtype] = DTYPES,
    min_scale: float = 1e-8,
    max_scale: float = 1e8,
    row_spread: float = 2.0,
    wide: bool = False,
) -> JacobianRecipe:
    """Draw a :class:`JacobianRecipe` (see the module docstring for the knobs).

    ``wide``: only ``n > K``, so the row span of ``J`` is a proper subspace of ``R^n`` (for
    ``K >= n`` a full-rank ``J`` spans everything and "lies in the row span" cannot fail).
    """
    if wide:
        if max_dim <= min_tasks:
            raise ValueError(f"wide Jacobians need max_dim > min_tasks ({max_dim} <= {min_tasks})")
        max_tasks = min(max_tasks, max_dim - 1)
    K = draw(st.integers(min_tasks, max_tasks))
    # Mostly small n (fast, and K > n makes rank deficiency common), sometimes large.
    lo_n = K + 1 if wide else 1
    n = draw(st.one_of(st.integers(lo_n, max(lo_n, 64)), st.integers(lo_n, max_dim)))
    structure = draw(st.sampled_from(list(structures)))
    full = min(K, n)
    rank = draw(st.integers(1, max(1, full - 1))) if structure == "low_rank" else full
    lo, hi = math.log10(min_scale), math.log10(max_scale)
    log_scale = draw(st.one_of(st.just(0.0), st.floats(lo, hi)))
    spread = draw(st.sampled_from([0.0, row_spread]))
    row_log_scales = tuple(
        draw(st.lists(st.floats(-spread / 2, spread / 2), min_size=K, max_size=K))
        if spread else [0.0] * K)
    dtype = draw(st.sampled_from(list(dtypes)))
    seed = draw(st.integers(0, 2**31 - 1))
    return JacobianRecipe(K, n, structure, rank, log_scale, row_log_scales, dtype, seed)


@attrs.frozen
class RowScaling:
    """Two positive row-factor vectors and the weights of their combination (reproducible
    from ``seed``; printed in failure messages)."""

    seed: int
    alpha: float
    beta: float
    decades: float = 1.0

    def build(self, K: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(c1, c2)``, each ``[K]`` float64 in ``[10^-decades, 10^decades]``."""
        g = torch.Generator().manual_seed(self.seed)
        exps = (2 * torch.rand(2, K, generator=g, dtype=torch.float64) - 1) * self.decades
        c = 10.0**exps
        return c[0], c[1]


def row_scalings(decades: float = 1.0) -> st.SearchStrategy[RowScaling]:
    """Draw a :class:`RowScaling` (``α, β`` from a few magnitudes, factors within
    ``decades`` of 1)."""
    weights = st.sampled_from([0.3, 1.0, 2.5])
    return st.builds(RowScaling, seed=st.integers(0, 2**16), alpha=weights, beta=weights,
                     decades=st.just(decades))


def jacobians(**kwargs: Any) -> st.SearchStrategy[torch.Tensor]:
    """Jacobians ``[K, n]`` (the built matrices of :func:`jacobian_recipes`)."""
    return jacobian_recipes(**kwargs).map(build_jacobian)


def aligned_jacobians(**kwargs: Any) -> st.SearchStrategy[torch.Tensor]:
    """Jacobians without any conflicting pair (for ``conflict_only``)."""
    return jacobians(structures=("aligned",), **kwargs)
