"""STCH: smooth Tchebycheff scalarisation.

Lin, Zhang, Yang, Zhang & Zhang, "Smooth Tchebycheff Scalarization for Multi-Objective
Optimization", ICML 2024, https://arxiv.org/abs/2402.19078 (Eq. 7; official code
Xi-L/STCH, folder ``STCH_MTL``).

The Tchebycheff scalarisation ``max_k λ_k (L_k - z_k)`` reaches every Pareto-optimal trade-off
(also on non-convex fronts, where a weighted sum cannot) but is not smooth; STCH replaces the
max by its log-sum-exp smoothing with parameter ``μ > 0``:

.. math:: S_\\mu(L) = \\mu \\log \\sum_k \\exp\\Big(\\frac{\\lambda_k (L_k - z_k)}{\\mu}\\Big),
          \\qquad
          w_k = \\frac{\\partial S_\\mu}{\\partial L_k}
              = \\lambda_k\\, \\mathrm{softmax}\\Big(\\frac{\\lambda (L - z)}{\\mu}\\Big)_k .

``S_μ`` is within ``μ log K`` of the max, and the weights concentrate on the worst-off task as
``μ → 0``. ``λ`` is the ``preference`` (default uniform ``1/K``, on the simplex as in the
paper), ``z`` the ``reference`` (ideal) point (default 0). The softmax is computed after
subtracting its largest argument, so a small ``μ`` never overflows.

**variant="mtl"**: the form used in the paper's multi-task experiments (official ``STCH_MTL``
code, and LibMTL's ``STCH``): for the first ``warmup_epochs`` epochs the objective is
``Σ_k log L_k`` (``w_k = 1/L_k``); the mean losses of the last warm-up epoch become the nadir
``ν``; afterwards ``S = K μ log Σ_k exp(log(L_k/ν_k)/μ)``, so
``w_k = K softmax(log(L/ν)/μ)_k / L_k``. No preference or reference there (the paper's MTL runs
use uniform ``λ``). If no step of epoch ``warmup_epochs`` was seen, the first later step's
own losses become the nadir. The reference code adds ``1e-20`` inside the logarithms; here
losses must be positive instead (a :class:`~mtlkit.errors.GradientError` otherwise), which
gives the same weights wherever those are finite.

Defaults: ``mu = 1.0`` and ``warmup_epochs = 4`` are LibMTL's (``--STCH_mu``,
``--STCH_warmup_epoch``); the paper reports several ``μ`` (0.01 to 1) with no single best.
TorchJD 0.18's ``STCH`` scalarizer has the paper form only and no default ``μ``; its weights sum
to at most ``max λ`` (``1/K`` when uniform), LibMTL's to ``K`` (its ``× K``).

Properties: weighted, positively homogeneous and linear under row scaling of J (losses fixed)
(weights from losses only), permutation invariant with the default uniform preference and zero
reference. ``variant="paper"`` is stateless; ``variant="mtl"`` keeps the warm-up loss sums and
the nadir (:meth:`reset` forgets them).
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
import torch
from mtlkit_plugins.aggregators._scalarize import as_preference, as_reference, per_task
from mtlkit_plugins.aggregators._solvers import check_choice, check_range, losses_vector

from mtlkit import hookimpl
from mtlkit.aggregation import LossWeighting
from mtlkit.errors import ConfigError, GradientError


@attrs.define(eq=False)
class STCH(LossWeighting):
    """Smooth Tchebycheff: ``w = λ ⊙ softmax(λ (L - z) / μ)``."""

    mu: float = 1.0
    preference: tuple[float, ...] | None = attrs.field(default=None, converter=as_preference)
    reference: tuple[float, ...] | None = attrs.field(default=None, converter=as_reference)
    variant: str = "paper"
    warmup_epochs: int = 4
    #: variant "mtl": loss sum and count over the last warm-up epoch, then the nadir point
    _sum: torch.Tensor | None = attrs.field(init=False, default=None, repr=False)
    _count: int = attrs.field(init=False, default=0, repr=False)
    _nadir: torch.Tensor | None = attrs.field(init=False, default=None, repr=False)

    properties: ClassVar[frozenset[str]] = frozenset(
        {"weighted", "positively_homogeneous", "linear_under_scaling", "permutation_invariant"})
    stateful: ClassVar[bool] = True

    def __attrs_post_init__(self) -> None:
        check_range("mu", self.mu, 0.0, 1e6, lo_open=True)
        check_choice("variant", self.variant, ("paper", "mtl"))
        if isinstance(self.warmup_epochs, bool) or not isinstance(self.warmup_epochs, int) \
                or self.warmup_epochs < 0:
            raise ConfigError(f"invalid warmup_epochs={self.warmup_epochs!r}: must be an "
                              "integer >= 0")
        if self.variant == "mtl" and (self.preference is not None or self.reference is not None):
            raise ConfigError("stch: variant='mtl' (the paper's multi-task form) normalises by "
                              "the nadir point and takes no preference or reference; use "
                              "variant='paper' for those")

    def reset(self) -> None:
        self._sum, self._count, self._nadir = None, 0, None

    def configure(self, num_tasks: int) -> None:
        K = int(num_tasks)  # a wrong-length preference fails before the first step
        per_task("stch", "preference", self.preference, K, 1.0)
        per_task("stch", "reference", self.reference, K, 0.0)

    def loss_weights(self, losses: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        L = losses_vector(losses, None, "stch")
        K = L.numel()
        if self.variant == "mtl":
            return self._mtl_weights(L, int(context.get("epoch", 0)))
        lam = per_task("stch", "preference", self.preference, K, 1.0 / K)
        z = per_task("stch", "reference", self.reference, K, 0.0)
        return lam * torch.softmax(lam * (L - z) / self.mu, dim=0)

    def _mtl_weights(self, L: torch.Tensor, epoch: int) -> torch.Tensor:
        if bool((L <= 0).any()):
            raise GradientError(f"stch (variant='mtl') takes log L_k and needs positive task "
                                f"losses, got {L.tolist()}")
        if self._nadir is None and epoch > self.warmup_epochs:
            # no step of the warm-up's last epoch seen (e.g. a run started past it): the first
            # step after it takes its own losses as the nadir instead of dividing by zero
            self._nadir = self._sum / self._count if self._sum is not None else L.clone()
        if self._nadir is None:
            if epoch == self.warmup_epochs:  # the reference code averages this epoch only
                self._sum = L.clone() if self._sum is None else self._sum + L
                self._count += 1
            return 1.0 / L  # gradient of Σ_k log L_k
        if self._nadir.numel() != L.numel():
            raise ConfigError(f"stch: the nadir point was set for {self._nadir.numel()} tasks, "
                              f"got {L.numel()} losses")
        K = L.numel()
        return K * torch.softmax(torch.log(L / self._nadir) / self.mu, dim=0) / L


@hookimpl
def register_aggregators(register):
    register("stch", STCH)
