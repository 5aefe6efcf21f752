"""ExcessMTL: task weights driven by estimated excess risks.

He et al., "Robust Multi-Task Learning with Excess Risks", ICML 2024,
https://proceedings.mlr.press/v235/he24n.html (arXiv 2402.02009), Eq. 6-9 and App. C.1.

The excess risk of task ``k`` (how far it is from its own optimum) is estimated by a second-order
Taylor expansion with an AdaGrad-style diagonal Hessian accumulated over the steps (Eq. 6-7):

.. math:: S_t = S_{t-1} + g_k^{\\odot 2}, \\qquad
          H_k = \\mathrm{diag}\\big(\\sqrt{S_t + 10^{-7}}\\big), \\qquad
          e_k = g_k^\\top H_k^{-1} g_k = \\sum_j \\frac{g_{kj}^2}{\\sqrt{S_{t,kj} + 10^{-7}}} .

Each ``e_k`` is divided by its baseline ``e_k^0`` (the average over the warm-up steps; App. C.1:
losses of different scales become comparable), and the weights take an exponentiated-gradient
step on the simplex (Eq. 9):

.. math:: w_k \\leftarrow \\frac{w_k \\exp(\\eta_\\alpha\\, e_k / (e_k^0 + 10^{-7}))}
          {\\sum_i w_i \\exp(\\eta_\\alpha\\, e_i / (e_i^0 + 10^{-7}))}, \\qquad
          w^{(0)} = \\tfrac1K \\mathbf 1, \\qquad d = w^\\top J .

Why: tasks far from their optimum (large excess risk) get more weight, while tasks whose loss
is high only because of label noise (high Bayes risk, small excess risk) do not take over, as
they would under loss-based weighting. It needs the coordinates of ``J`` (a per-coordinate
Hessian), so it is a Jacobian-level method; the state ``S`` is a ``[K, n]`` tensor (one extra
copy of ``J``). The update is computed in log space (a softmax), so a huge ratio cannot overflow
into NaN weights.

Parameters: ``robust_step_size`` ``η_α`` (default 1.0 as in TorchJD; LibMTL takes it from its
command line), ``n_warmup_steps`` (default 1: the first step keeps uniform weights and sets the
baseline, which is what the official code and LibMTL do; the paper suggests statistics over
3 epochs, i.e. ``3 · steps_per_epoch``). Weights sum to 1 as in the paper and TorchJD (LibMTL
and the official code scale them to sum to K). Stateful: :meth:`reset` forgets ``S``, the
baseline and the weights; a change of ``K`` or ``n`` restarts them.

Properties: weighted, permutation invariant (for a consistently permuted history). Not
positively homogeneous (the ``1e-7`` constants of the paper's code fix an absolute scale).
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
import torch
from mtlkit_plugins.aggregators._solvers import check_range

from mtlkit import hookimpl
from mtlkit.aggregation import Aggregator
from mtlkit.errors import invalid_value

#: the official code's constant inside the square root and in the baseline division
EPS = 1e-7


@attrs.define(eq=False)
class ExcessMTL(Aggregator):
    """Exponentiated-gradient task weights from AdaGrad-style excess-risk estimates."""

    robust_step_size: float = 1.0
    n_warmup_steps: int = 1
    _sq_grad_sum: torch.Tensor | None = attrs.field(init=False, default=None, repr=False)
    _weights: torch.Tensor | None = attrs.field(init=False, default=None, repr=False)
    _baseline: torch.Tensor | None = attrs.field(init=False, default=None, repr=False)
    _warmup_sum: torch.Tensor | None = attrs.field(init=False, default=None, repr=False)
    _steps: int = attrs.field(init=False, default=0, repr=False)

    properties: ClassVar[frozenset[str]] = frozenset({"weighted", "permutation_invariant"})
    stateful: ClassVar[bool] = True

    def __attrs_post_init__(self) -> None:
        check_range("robust_step_size", self.robust_step_size, 0.0, 1e6, lo_open=True)
        w = self.n_warmup_steps
        if isinstance(w, bool) or not isinstance(w, int) or w < 1:
            raise invalid_value("n_warmup_steps", w, "must be an integer >= 1 (the baseline "
                                "excess risks are measured during the warm-up)")

    def reset(self) -> None:
        self._sq_grad_sum = None
        self._weights = None
        self._baseline = None
        self._warmup_sum = None
        self._steps = 0

    def aggregate(self, J: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        K, n = J.shape
        Jd = J.detach()
        if self._sq_grad_sum is None or tuple(self._sq_grad_sum.shape) != (K, n):
            self.reset()
            self._sq_grad_sum = torch.zeros_like(Jd)
            self._weights = torch.full((K,), 1.0 / K, dtype=torch.float64)
            self._warmup_sum = torch.zeros(K, dtype=torch.float64)
        assert self._weights is not None and self._warmup_sum is not None
        sq = Jd * Jd
        self._sq_grad_sum.add_(sq)
        # Eq. 6-7: e_k = g_k^T diag(sqrt(S + eps))^{-1} g_k, summed in float64
        excess = (sq / torch.sqrt(self._sq_grad_sum + EPS)).sum(dim=1, dtype=torch.float64).cpu()
        step, self._steps = self._steps, self._steps + 1
        if step < self.n_warmup_steps:
            self._warmup_sum += excess
        else:
            if self._baseline is None:
                self._baseline = self._warmup_sum / self.n_warmup_steps
            ratio = excess / (self._baseline + EPS)
            # Eq. 9 in log space: w ∝ w exp(η r) is softmax(log w + η r)
            self._weights = torch.softmax(torch.log(self._weights)
                                          + self.robust_step_size * ratio, dim=0)
        return self._weights.to(device=J.device, dtype=J.dtype) @ J


@hookimpl
def register_aggregators(register):
    register("excess_mtl", ExcessMTL)
