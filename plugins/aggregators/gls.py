"""GLS: geometric loss strategy (the geometric mean of the task losses).

Chennupati, Sistu, Yogamani & Rawashdeh, "MultiNet++: Multi-Stream Feature Aggregation and
Geometric Loss Strategy for Multi-Task Learning", CVPR Workshops 2019,
https://arxiv.org/abs/1904.08492 (Eq. 3).

The objective is the geometric mean of the K losses, and its gradient with respect to the
losses is the loss weighting the trainer back-propagates (one backward pass):

.. math:: S(L) = \\Big(\\prod_{k=1}^K L_k\\Big)^{1/K}, \\qquad
          w_k = \\frac{\\partial S}{\\partial L_k} = \\frac{S(L)}{K\\, L_k}, \\qquad
          d = \\sum_k w_k g_k .

Why: the geometric mean is invariant to rescaling any one task's loss
(``S(c_k L_k, ...) ∝ S(L)``), so a task measured in large units cannot dominate, and the
``1/L_k`` factor gives tasks whose loss is already small a larger push. ``S`` is computed as
``exp(mean log L)`` so a product of many small or large losses neither underflows nor overflows.

Needs positive losses: the weight ``S / (K L_k)`` is undefined at ``L_k = 0`` (and the geometric
mean of negative numbers is not real), so a loss ``<= 0`` raises
:class:`~mtlkit.errors.GradientError` naming the losses.

Peers: TorchJD 0.18 ``GeometricMean`` (scalarizer, ``exp(mean log L)``, accepts ``L_k = 0``
and then back-propagates an infinite/NaN gradient); LibMTL ``GLS`` back-propagates
``(Π L_k)^{1/K}`` (same gradient as here; the ``batch_weight`` it returns for logging,
``L_k / (K Π L)``, is not that gradient).

Properties: weighted, positively homogeneous and linear under row scaling of J (losses fixed)
(the weights depend on the losses only), permutation invariant (a symmetric function of the
losses). Stateless.
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
import torch
from mtlkit_plugins.aggregators._solvers import losses_vector

from mtlkit import hookimpl
from mtlkit.aggregation import LossWeighting
from mtlkit.errors import GradientError


@attrs.define(eq=False)
class GLS(LossWeighting):
    """Geometric mean of the task losses: ``w_k = (Π L)^{1/K} / (K L_k)``."""

    properties: ClassVar[frozenset[str]] = frozenset(
        {"weighted", "positively_homogeneous", "linear_under_scaling", "permutation_invariant"})

    def loss_weights(self, losses: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        L = losses_vector(losses, None, "gls")
        if bool((L <= 0).any()):
            raise GradientError(f"gls needs positive task losses (the geometric mean's "
                                f"gradient S/(K L_k) is undefined at L_k <= 0), got {L.tolist()}")
        log_L = torch.log(L)
        # S / (K L_k) = exp(mean log L - log L_k) / K: one exp per task, no product formed
        return torch.exp(log_L.mean() - log_L) / L.numel()


@hookimpl
def register_aggregators(register):
    register("gls", GLS)
