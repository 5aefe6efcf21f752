"""PCD: priority-constrained descent.

Varam & AlHajri, "Not All Objectives Are Born Equal: Priority-Constrained Descent for
Hierarchical Multi-Objective Optimization", TMLR 2026, https://arxiv.org/abs/2606.29521
(Algorithm 1, Def. 4.5).

One task is the *primary* objective, the others are secondary. With normalised gradients
``\\tilde g_i = s_i g_i``, PCD stays as close to the primary gradient as it can while every
secondary task receives at least a fraction ``τ`` of the first-order progress its own
normalised step would give:

.. math:: \\tilde d = \\arg\\min_d \\tfrac12 \\lVert d - \\tilde g_1 \\rVert^2 \\quad
          \\text{s.t.} \\quad \\tilde g_j^\\top d \\ge \\tau_j \\lVert \\tilde g_j \\rVert^2,
          \\; j = 2..K, \\qquad
          d = \\tilde d \\, \\lVert g_1 \\rVert / \\lVert \\tilde d \\rVert,

``s_i = 1/\\sqrt{\\hat v_i + ε}`` with ``\\hat v_i`` Adam's bias-corrected EMA (decay ``β``) of
``‖g_i‖²`` over the steps. Why: a hierarchy (accuracy first; sparsity, robustness or an auxiliary
task second) that symmetric methods cannot express; ``τ`` is a scale-free dial between "primary
only" (0) and "full secondary progress" (1).

``priority`` lists every task once, most important first (task indices, or task names matched
against ``context["task_names"]``); the first is the primary, and a list ``tau`` gives one value
per secondary in that order. Default: the task order (row 0 primary), as in TorchJD and the
reference code, which take the first loss as the primary.

By stationarity ``\\tilde d = \\tilde g_1 + \\sum_j μ_j \\tilde g_j`` with the multipliers ``μ ≥ 0``
of the dual QP ``\\min_{μ ≥ 0} ½ μ^T \\tilde G_s μ - b^T μ``, ``b_j = τ_j \\tilde G_{jj} - \\tilde
G_{j1}``, a K-1 dimensional QP on the Gramian: a :class:`~mtlkit.aggregation.GramianWeighting`.
It is solved with quadprog (ridge ``1e-10`` on the normalised Gramian, as UPGrad); if ``b <= 0``
the primary already satisfies every constraint and ``d = g_1`` exactly. Special cases, as in
TorchJD: ``g_1 = 0`` gives ``d = 0``; mutually incompatible constraints (e.g. two opposite
secondary gradients with ``τ > 0``; detected as a primal violation of the QP's answer) drop the
constraints and give ``d = g_1``; ``\\tilde d = 0`` up to the Gramian's precision gives ``d = 0``.

Defaults ``τ = 0.02``, ``β = 0.999``, ``ε = 1e-8`` are the reference code's and TorchJD's.
TorchJD solves the QP with its own Goldfarb-Idnani active set; quadprog is the same algorithm.
LibMTL has no PCD. Stateful (the EMA; :meth:`reset` clears it; a change of ``K`` restarts it).

Properties: weighted. Not permutation invariant (the primary is special), not positively
homogeneous (``ε`` fixes an absolute scale), not non-conflicting (the primary may be traded for
the secondaries' progress).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import attrs
import numpy as np
import torch
from mtlkit_plugins.aggregators._solvers import (
    RIDGE,
    bounded_threads,
    check_range,
    require_quadprog,
    to_weights,
)

from mtlkit import hookimpl
from mtlkit.aggregation import GramianWeighting
from mtlkit.errors import invalid_value

#: relative primal violation above which the QP's answer means "infeasible constraints"
FEASIBILITY_TOL = 1e-6


@attrs.define(eq=False)
class PCD(GramianWeighting):
    """Closest direction to the primary gradient that gives each secondary task progress."""

    priority: list[int | str] | None = None
    tau: float | list[float] = 0.02
    beta: float = 0.999
    eps: float = 1e-8
    _sq_norm_ema: torch.Tensor | None = attrs.field(init=False, default=None, repr=False)
    _steps: int = attrs.field(init=False, default=0, repr=False)

    properties: ClassVar[frozenset[str]] = frozenset({"weighted"})
    stateful: ClassVar[bool] = True

    def __attrs_post_init__(self) -> None:
        require_quadprog("PCD")
        if self.priority is not None:
            if isinstance(self.priority, (str, bytes)) or not isinstance(self.priority, Sequence) \
                    or not self.priority:
                raise invalid_value("priority", self.priority, "need a list of every task, most "
                                    "important first (indices or task names)")
            for p in self.priority:
                if isinstance(p, bool) or not isinstance(p, (int, str)):
                    raise invalid_value("priority", self.priority,
                                        f"entry {p!r} is neither a task index nor a task name")
            if len(set(self.priority)) != len(self.priority):
                raise invalid_value("priority", self.priority, "a task is listed twice")
        taus = self.tau if isinstance(self.tau, (list, tuple)) else [self.tau]
        if not taus:
            raise invalid_value("tau", self.tau, "need a number or one number per secondary task")
        for t in taus:
            check_range("tau", t, 0.0, 1.0)
        check_range("beta", self.beta, 0.0, 1.0, hi_open=True)
        check_range("eps", self.eps, 0.0, math.inf, hi_open=True)

    def reset(self) -> None:
        self._sq_norm_ema = None
        self._steps = 0

    def order(self, K: int, task_names: Sequence[str] | None = None) -> list[int]:
        """Task indices, most important first (validated against ``K`` and the task names)."""
        if self.priority is None:
            return list(range(K))
        if len(self.priority) != K:
            raise invalid_value("priority", self.priority,
                                f"must list each of the {K} tasks exactly once")
        names = list(task_names) if task_names is not None else None
        out = []
        for p in self.priority:
            if isinstance(p, str):
                if names is None or p not in names:
                    known = ", ".join(names) if names else "none given"
                    raise invalid_value("priority", self.priority,
                                        f"unknown task {p!r} (task names: {known})")
                out.append(names.index(p))
            elif not 0 <= p < K:
                raise invalid_value("priority", self.priority,
                                    f"task index {p} is out of range for {K} tasks")
            else:
                out.append(p)
        if len(set(out)) != K:
            raise invalid_value("priority", self.priority, "a task is listed twice")
        return out

    def taus(self, K: int) -> np.ndarray:
        if isinstance(self.tau, (list, tuple)):
            if len(self.tau) != K - 1:
                raise invalid_value("tau", self.tau, f"need one value per secondary task "
                                    f"({K - 1}) in priority order, or one number")
            return np.asarray(self.tau, dtype=np.float64)
        return np.full(K - 1, float(self.tau))

    def configure(self, num_tasks: int) -> None:
        K = int(num_tasks)
        if K >= 2:
            self.taus(K)
            if self.priority is not None and all(isinstance(p, int) for p in self.priority):
                self.order(K)

    def _scales(self, sq: np.ndarray) -> np.ndarray:
        """Update the EMA of ``‖g_i‖²`` (task order) and return ``s_i`` (Def. 4.5)."""
        K = sq.size
        if self._sq_norm_ema is None or self._sq_norm_ema.numel() != K:
            self.reset()
            self._sq_norm_ema = torch.zeros(K, dtype=torch.float64)
        self._steps += 1
        v = self.beta * self._sq_norm_ema.numpy() + (1.0 - self.beta) * sq
        self._sq_norm_ema = torch.as_tensor(v, dtype=torch.float64)
        denom = np.sqrt(v / (1.0 - self.beta ** self._steps) + self.eps)
        # an EMA of 0 means the gradient was always 0: its scale does not matter (eps = 0 safe)
        return np.divide(1.0, denom, out=np.zeros(K), where=denom > 0)

    @bounded_threads
    def weights(self, G: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        A = G.detach().to(device="cpu", dtype=torch.float64).numpy()
        A = 0.5 * (A + A.T)
        K = A.shape[0]
        order = self.order(K, context.get("task_names"))
        taus = self.taus(K)
        s = self._scales(np.maximum(np.diag(A), 0.0))
        P = A[np.ix_(order, order)] * np.outer(s[order], s[order])  # normalised, priority order
        w = np.zeros(K)
        sq1 = A[order[0], order[0]]
        if sq1 <= 0.0:
            return to_weights(w)  # g_1 = 0: halt (Sec. 4.7)
        mu = self._multipliers(P, taus)
        coef = np.concatenate([[1.0], mu])
        d_sq = float(coef @ P @ coef)
        magnitude = float(np.abs(coef) @ np.sqrt(np.maximum(np.diag(P), 0.0))) ** 2
        if d_sq <= 10.0 * float(np.finfo(np.float32 if G.dtype != torch.float64
                                         else np.float64).eps) * magnitude:
            return to_weights(w)  # d~ = 0 within the Gramian's precision
        w[order] = coef * s[order] * math.sqrt(sq1 / d_sq)
        return to_weights(w)

    def _multipliers(self, P: np.ndarray, taus: np.ndarray) -> np.ndarray:
        """``μ >= 0`` of the dual QP on the normalised Gramian ``P`` (priority order)."""
        quadprog = require_quadprog("PCD")
        sigma = float(np.mean(np.diag(P)))
        Pn = P / sigma  # μ is invariant to a common scale of the normalised gradients
        Gs = Pn[1:, 1:]
        b = taus * np.diag(Gs) - Pn[1:, 0]
        m = b.size
        if bool((b <= 0.0).all()):
            return np.zeros(m)  # the primary gradient already satisfies every constraint
        try:
            mu = quadprog.solve_qp(Gs + RIDGE * np.eye(m), b, np.eye(m), np.zeros(m), 0)[0]
        except ValueError:  # quadprog: "constraints are inconsistent" on extreme inputs
            return np.zeros(m)
        mu = np.maximum(mu, 0.0)
        # Infeasible constraints make the dual unbounded: the ridged answer then leaves an O(1)
        # primal violation (a feasible problem leaves <= RIDGE·‖μ‖); fall back to d = g_1.
        violation = float(np.max(b - Gs @ mu))
        if violation > FEASIBILITY_TOL * max(1.0, float(np.max(np.diag(Gs)))):
            return np.zeros(m)
        return mu


@hookimpl
def register_aggregators(register):
    register("pcd", PCD)
