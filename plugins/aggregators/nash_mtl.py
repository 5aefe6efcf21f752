"""Nash-MTL: multi-task learning as a bargaining game.

Navon et al., "Multi-Task Learning as a Bargaining Game", ICML 2022,
https://arxiv.org/abs/2202.01017 (§3, Alg. 1; reference code AvivNavon/nash-mtl).

The Nash bargaining solution ``d = Σ_k α_k g_k`` solves ``G α = 1 / α`` (element-wise), i.e.
``α_k (G α)_k = 1``, so every task improves: ``g_k · d = 1 / α_k > 0``. It is found with the
paper's sequential convex procedure: starting from the previous ``α`` (ones at first), repeat
``optim_niter`` times

.. math:: \\min_{\\alpha \\ge 0}\\; \\mathbf{1}^\\top G\\alpha
          + \\nabla\\varphi(\\alpha_t)^\\top\\alpha
          \\quad \\text{s.t.}\\; -\\log\\alpha_k - \\log (G\\alpha)_k \\le 0,\\quad
          \\nabla\\varphi(\\alpha_t) = 1/\\alpha_t + G^\\top (1/G\\alpha_t)

(the concave part linearised at ``α_t``), stopping when ``‖Gα - 1/α‖ < tol`` or ``α`` stops
moving. The convex problem is built once per K with cvxpy parameters and warm-started (the
reference rebuilds nothing either, but its ECOS solver is no longer shipped with cvxpy >= 1.6 and
it falls back *silently*, AvivNavon/nash-mtl#21). Here the solver is explicit (``solver``,
default CLARABEL); a missing solver raises at construction, a failed solve raises
:class:`~mtlkit.errors.GradientError` (``on_failure="warn"``: a loud ``RuntimeWarning`` and the
previous weights). Solved on the normalised Gramian ``G/s``; the weights are rescaled by
``1/sqrt(s)`` so the answer is the solution for ``G`` itself.

Special cases: tasks with a zero gradient are indifferent and get weight 0; when the remaining
gradients are Pareto-stationary (0 in their convex hull) no bargaining solution exists and the
update is zero (as MGDA's).

Hyper-parameters (reference defaults): ``optim_niter = 20``, ``update_weights_every = 1``
(reuse the weights in between), ``tol = 1e-3`` on ``‖Gα - 1/α‖`` (normalised units). The
reference also clips the shared gradient norm at 1.0; that is an optimiser setting, not part of
the aggregator.

Properties: non-conflicting, permutation invariant, weighted. *Not* linear under scaling: the
bargaining solution is scale-invariant (``‖d‖² = Σ_k α_k (Gα)_k = K``). Stateful (warm start,
step counter): :meth:`reset` between runs.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, ClassVar

import attrs
import numpy as np
import torch
from mtlkit_plugins.aggregators._solvers import (
    as_normalized_numpy,
    check_choice,
    check_range,
    stationarity_screen,
    to_weights,
)

from mtlkit import hookimpl
from mtlkit.aggregation import GramianWeighting
from mtlkit.errors import ConfigError, GradientError, invalid_value


def _cvxpy() -> Any:
    try:
        import cvxpy as cp
    except ImportError as exc:  # pragma: no cover - cvxpy is in the solvers extra
        raise ConfigError("nash_mtl needs cvxpy: pip install 'mtlkit[solvers]'") from exc
    return cp


def _feasible_start(B: np.ndarray, mgda: np.ndarray) -> np.ndarray:
    """A strictly feasible point of ``α_k (Bα)_k >= 1``, ``α > 0``.

    The reference code starts from ones, which is infeasible (``(B 1)_k < 0``) when some task
    conflicts with the sum, and then keeps the previous weights without a word. The min-norm
    weights ``w*`` give ``B w* >= ‖g_w*‖² > 0`` (not Pareto-stationary); a small uniform part
    makes every ``α_k > 0`` while ``B α`` stays positive; a scale makes it feasible.
    """
    m = B.shape[0]
    floor = float(mgda @ B @ mgda)
    spread = float(np.abs(B).sum(axis=1).max()) / m
    delta = 0.5 * floor / max(spread, 1e-300)
    alpha = mgda + min(delta, 1.0) / m
    prod = alpha * (B @ alpha)
    return alpha / np.sqrt(prod.min()) if prod.min() > 0 else np.ones(m)


class _Problem:
    """The parameterised convex sub-problem for one K (built once, warm-started)."""

    def __init__(self, K: int) -> None:
        cp = _cvxpy()
        self.alpha = cp.Variable(K, nonneg=True)
        self.G = cp.Parameter((K, K))
        self.tag = cp.Parameter(K)
        G_alpha = self.G @ self.alpha
        constraints = [-cp.log(self.alpha) - cp.log(G_alpha) <= 0]
        self.problem = cp.Problem(cp.Minimize(cp.sum(G_alpha) + self.tag @ self.alpha),
                                  constraints)


@attrs.define(eq=False)
class NashMTL(GramianWeighting):
    """Nash bargaining solution over the task gradients (sequential convex procedure)."""

    solver: str = "CLARABEL"
    optim_niter: int = 20
    update_weights_every: int = 1
    tol: float = 1e-3
    on_failure: str = "raise"
    _problems: dict[int, _Problem] = attrs.field(init=False, factory=dict, repr=False)
    _alpha: np.ndarray | None = attrs.field(init=False, default=None, repr=False)
    _weights: torch.Tensor | None = attrs.field(init=False, default=None, repr=False)
    _step: int = attrs.field(init=False, default=0, repr=False)

    iterative_solver: ClassVar[bool] = True
    properties: ClassVar[frozenset[str]] = frozenset(
        {"non_conflicting", "permutation_invariant", "weighted"})
    stateful: ClassVar[bool] = True

    def __attrs_post_init__(self) -> None:
        cp = _cvxpy()
        installed = cp.installed_solvers()
        if self.solver.upper() not in installed:
            raise invalid_value("solver", self.solver,
                                "installed cvxpy solvers: " + ", ".join(installed))
        if not isinstance(self.optim_niter, int) or self.optim_niter < 1:
            raise invalid_value("optim_niter", self.optim_niter, "must be an integer >= 1")
        if not isinstance(self.update_weights_every, int) or self.update_weights_every < 1:
            raise invalid_value("update_weights_every", self.update_weights_every,
                                "must be an integer >= 1")
        check_range("tol", self.tol, 0.0, 1.0, lo_open=True)
        check_choice("on_failure", self.on_failure, ("raise", "warn"))

    def __getstate__(self) -> dict[str, Any]:
        # The trainer checkpoints the aggregator by pickling it; compiled cvxpy problems hold
        # solver handles that cannot be pickled, and are rebuilt on demand anyway.
        state = {f.name: getattr(self, f.name) for f in attrs.fields(type(self))}
        state["_problems"] = {}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            object.__setattr__(self, name, value)

    def reset(self) -> None:
        self._alpha = None
        self._weights = None
        self._step = 0

    def weights(self, G: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        K = G.shape[0]
        reuse = (self._weights is not None and self._weights.numel() == K
                 and self._step % self.update_weights_every != 0)
        self._step += 1
        if reuse:
            assert self._weights is not None
            return self._weights
        self._weights = self._solve(G)
        return self._weights

    def _solve(self, G: torch.Tensor) -> torch.Tensor:
        A, scale = as_normalized_numpy(G)
        K = A.shape[0]
        w = np.zeros(K)
        screened = stationarity_screen(A, G.dtype)
        if screened is None:  # no active task, or Pareto-stationary: no update
            return torch.zeros(K, dtype=torch.float64)
        active, B, mgda = screened
        start = None
        prev = self._alpha
        if prev is not None and prev.shape == (K,) and (prev[active] > 0).all():
            start = self._alpha[active]
        if start is None or (B @ start <= 0).any():
            start = _feasible_start(B, mgda)
        try:
            alpha = self._sequential(B, start)
        except GradientError as exc:
            if self.on_failure == "raise":
                raise
            warnings.warn(f"nash_mtl: {exc}; reusing the previous weights", RuntimeWarning,
                          stacklevel=3)
            if self._weights is not None and self._weights.numel() == K:
                return self._weights
            return torch.full((K,), 1.0 / K, dtype=torch.float64)
        w[active] = alpha
        self._alpha = w.copy()
        return to_weights(w / math.sqrt(scale))

    def _sequential(self, B: np.ndarray, start: np.ndarray) -> np.ndarray:
        m = B.shape[0]
        prob = self._problems.get(m)
        if prob is None:
            prob = self._problems[m] = _Problem(m)
        prob.G.value = B
        alpha = start.copy()
        for _ in range(self.optim_niter):
            G_alpha = B @ alpha
            prob.tag.value = 1.0 / alpha + B.T @ (1.0 / np.maximum(G_alpha, 1e-300))
            prob.alpha.value = alpha
            try:
                prob.problem.solve(solver=self.solver, warm_start=True)
            except Exception as exc:  # cvxpy raises SolverError and friends
                raise GradientError(f"Nash-MTL sub-problem failed ({self.solver}): {exc}") \
                    from exc
            if prob.problem.status != "optimal" or prob.alpha.value is None:
                raise GradientError(f"Nash-MTL sub-problem status {prob.problem.status!r} "
                                    f"({self.solver})")
            new = np.maximum(np.asarray(prob.alpha.value, dtype=float), 1e-300)
            moved = float(np.linalg.norm(new - alpha))
            alpha = new
            if (np.linalg.norm(B @ alpha - 1.0 / alpha) < self.tol) or moved < 1e-6:
                break
        return alpha


@hookimpl
def register_aggregators(register):
    register("nash_mtl", NashMTL)
