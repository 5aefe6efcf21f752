"""COSMOS: linear scalarisation with a cosine penalty towards the preference.

Ruchte & Grabocka, "Scalable Pareto Front Approximation for Deep Multi-Objective Learning",
ICDM 2021, https://arxiv.org/abs/2103.13392 (Eq. 4; official code ruchtem/cosmos,
``methods/cosmos/cosmos.py``).

With a preference ``r`` (non-negative) the objective rewards loss vectors that point along
``r``:

.. math:: S(L) = r^\\top L - \\lambda \\cos(r, L)
               = r^\\top L - \\lambda \\frac{r^\\top L}{\\lVert r\\rVert\\,\\lVert L\\rVert},

and its gradient with respect to the losses is the loss weighting (one backward pass):

.. math:: w = \\frac{\\partial S}{\\partial L}
            = r - \\frac{\\lambda}{\\lVert r\\rVert\\,\\lVert L\\rVert}
              \\Big(r - \\frac{r^\\top L}{\\lVert L\\rVert^2} L\\Big).

Why: a plain weighted sum reaches only the convex part of the Pareto front and ignores the
direction of the trade-off; the cosine term pulls the loss vector onto the ray of ``r``, so
different preferences give well-spread trade-offs. The bracket is ``r`` minus its projection on
``L``: orthogonal to ``L``, so the penalty turns the loss vector without changing its length to
first order. Undefined at ``L = 0`` (the cosine divides by ``‖L‖``): all-zero losses raise
:class:`~mtlkit.errors.GradientError`.

The paper trains one network for the whole front by conditioning it on ``r`` (the preference
is fed to the input) and drawing ``r ~ Dir(α)`` per batch. The conditioning is a model choice
outside an aggregator; here ``preference`` is fixed (default uniform ``1/K``, the centre of the
front) unless ``alpha`` is given, in which case a fresh ``r ~ Dir(α, ..., α)`` is drawn each
step from the trainer's seeded generator (else its own, seeded with ``seed``); useful only
with a preference-conditioned model.

Defaults: ``lam = 2`` and (when sampling) ``alpha = 1.2`` are the official code's method
defaults (its Multi-MNIST setting; the paper uses ``λ`` from 0.01 to 8 across datasets).
TorchJD 0.18's ``COSMOS`` scalarizer takes ``lambda_`` without a default and a fixed
preference; LibMTL has no COSMOS. The official code's ``cosine_similarity`` clamps each norm at
``1e-8``; here a zero loss vector is an error instead.

Properties: weighted, positively homogeneous and linear under row scaling of J (losses fixed)
(weights from losses only), permutation invariant with the default fixed uniform preference.
Not non-conflicting. Stateful only through its own generator (used when ``alpha`` is set and
the trainer passes none; :meth:`reset` reseeds it).
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
import numpy as np
import torch
from mtlkit_plugins.aggregators._scalarize import as_preference, per_task
from mtlkit_plugins.aggregators._solvers import (
    check_range,
    losses_vector,
    make_generator,
    pick_generator,
)

from mtlkit import hookimpl
from mtlkit.aggregation import LossWeighting
from mtlkit.errors import ConfigError, GradientError


@attrs.define(eq=False)
class COSMOS(LossWeighting):
    """``S = r^T L - λ cos(r, L)``; weights ``∂S/∂L``."""

    lam: float = 2.0
    preference: tuple[float, ...] | None = attrs.field(default=None, converter=as_preference)
    alpha: float | None = None
    seed: int = attrs.field(default=0, converter=int)
    _generator: torch.Generator = attrs.field(init=False, repr=False)

    properties: ClassVar[frozenset[str]] = frozenset(
        {"weighted", "positively_homogeneous", "linear_under_scaling", "permutation_invariant"})
    stateful: ClassVar[bool] = True  # with alpha, its own generator advances between calls

    def __attrs_post_init__(self) -> None:
        check_range("lam", self.lam, 0.0, 1e6)
        if self.alpha is not None:
            check_range("alpha", self.alpha, 0.0, 1e6, lo_open=True)
            if self.preference is not None:
                raise ConfigError("cosmos: give either a fixed preference or alpha (a "
                                  "Dirichlet-sampled preference per step), not both")
        self.reset()

    def reset(self) -> None:
        self._generator = make_generator(self.seed)

    def configure(self, num_tasks: int) -> None:
        per_task("cosmos", "preference", self.preference, int(num_tasks), 1.0)

    def _preference(self, K: int, context: dict[str, Any]) -> torch.Tensor:
        if self.alpha is None:
            return per_task("cosmos", "preference", self.preference, K, 1.0 / K)
        gen = pick_generator(context, self._generator)
        # torch's Dirichlet takes no generator: seed NumPy's from the (seeded) torch one
        seed = int(torch.randint(0, 2**62, (1,), generator=gen, device=gen.device))
        r = np.random.default_rng(seed).dirichlet(np.full(K, float(self.alpha)))
        return torch.as_tensor(r, dtype=torch.float64)

    def loss_weights(self, losses: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        L = losses_vector(losses, None, "cosmos")
        r = self._preference(L.numel(), context)
        norm_L = float(torch.linalg.vector_norm(L))
        if norm_L == 0.0:
            raise GradientError("cosmos: all task losses are zero; the cosine penalty "
                                "cos(r, L) is undefined at L = 0")
        rL = float(r @ L)
        scale = self.lam / (float(torch.linalg.vector_norm(r)) * norm_L)
        return r - scale * (r - (rL / norm_L**2) * L)


@hookimpl
def register_aggregators(register):
    register("cosmos", COSMOS)
