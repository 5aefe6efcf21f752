"""GO4Align: group optimisation for multi-task alignment.

Shen, Wang, Xiao, van Noord & Worring, "GO4Align: Group Optimization for Multi-Task
Alignment", NeurIPS 2024, https://arxiv.org/abs/2404.06486 (Sec. 3; official code
autumn9999/GO4Align, ``methods/cluster_methods.py``, class ``GO4ALIGN``).

A loss-level method that aligns the learning progress of the tasks by weighting *groups* of
similar tasks. Each step, with the detached losses ``L``:

1. **Risk-guided group indicators.** Exponentiated-gradient "adversarial probabilities"
   ``p`` (initialised to ``1/K``) carry the risk history, and a scale term the current balance:

   .. math:: p \\leftarrow \\frac{p \\odot e^{-\\eta L}}{\\sum_k p_k e^{-\\eta L_k}}, \\qquad
             \\gamma_k = \\frac{\\sum_j L_j}{L_k}\\, p_k .

2. **Dynamical group assignment.** The indicators ``γ_k`` are clustered into ``G`` groups by
   K-means; every task takes its group's centre (the mean ``γ`` of the group) as weight:

   .. math:: w_k = \\frac{1}{|C(k)|} \\sum_{j \\in C(k)} \\gamma_j, \\qquad
             d = \\sum_k w_k g_k .

   ``G = 1`` gives every task ``mean(γ)``; ``G = K`` gives ``w = γ``.

Why: tasks whose loss is small relative to the others (learned quickly) get a large
``ΣL/L_k``; grouping them shares one weight between tasks at a similar stage, which the paper
reports aligns convergence better than per-task weights, at the cost of a loss weighting
(one backward pass).

**The clustering.** The official code calls ``kmeans_pytorch`` (Lloyd's algorithm from a
random start): its groups may depend on the seed and stop at a local optimum. The indicators
are one-dimensional, where K-means can be solved *exactly*: optimal clusters are contiguous in
sorted order, and dynamic programming over the sorted values finds the global minimum of the
within-group sum of squares in ``O(G K²)`` (Wang & Song 2011, Ckmeans.1d.dp). So this module
gives the K-means optimum the official code aims at, deterministically.

Defaults: ``step_size = 1e-4`` (the official ``--robust_step_size``); ``num_groups = 2``
(the official script's default is 1, which reduces the method to a dynamically scaled sum, so
mtlkit takes the smallest grouping that groups). ``num_groups`` must not exceed K
(:class:`~mtlkit.errors.ConfigError`); positive losses are required (``ΣL/L_k``).

Properties: weighted, positively homogeneous and linear under row scaling of J (losses fixed)
(weights from losses only), permutation invariant (symmetric updates from uniform ``p``; the
exact clustering depends only on the values). Stateful (``p``): :meth:`reset`; a change of K
restarts from uniform.
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
import numpy as np
import torch
from mtlkit_plugins.aggregators._solvers import check_range, losses_vector

from mtlkit import hookimpl
from mtlkit.aggregation import LossWeighting
from mtlkit.errors import ConfigError, GradientError


def kmeans_1d(x: np.ndarray, groups: int) -> np.ndarray:
    """Each value replaced by its centre in the exact ``groups``-means clustering of ``x``.

    Dynamic programming over the sorted values: ``D[g, j]`` is the least sum of squares of the
    first ``j`` sorted values in ``g`` contiguous groups. Values are divided by their largest
    magnitude first, so the prefix-sum form of each group's sum of squares stays accurate.
    """
    K = x.size
    order = np.argsort(x, kind="stable")
    top = float(np.max(np.abs(x))) or 1.0
    s = x[order] / top
    c1 = np.concatenate([[0.0], np.cumsum(s)])
    c2 = np.concatenate([[0.0], np.cumsum(s * s)])

    D = np.full((groups + 1, K + 1), np.inf)
    start = np.zeros((groups + 1, K + 1), dtype=int)
    D[0, 0] = 0.0
    for g in range(1, groups + 1):
        for j in range(g, K + 1):
            i = np.arange(g - 1, j)  # candidate starts of the last group s[i:j]
            t = c1[j] - c1[i]
            sse = np.maximum((c2[j] - c2[i]) - t * t / (j - i), 0.0)
            costs = D[g - 1, i] + sse
            best = int(np.argmin(costs))  # first minimum: ties go to the longer last group
            D[g, j], start[g, j] = costs[best], int(i[best])
    centres = np.empty(K)
    j = K
    for g in range(groups, 0, -1):
        i = start[g, j]
        centres[order[i:j]] = x[order[i:j]].mean()
        j = i
    return centres


@attrs.define(eq=False)
class GO4Align(LossWeighting):
    """Risk-guided indicators ``(ΣL/L_k) p_k``, clustered; each task gets its group's mean."""

    num_groups: int = 2
    step_size: float = 1e-4
    #: the exponentiated-gradient probabilities p (float64); None before the first step
    _probs: torch.Tensor | None = attrs.field(init=False, default=None, repr=False)

    properties: ClassVar[frozenset[str]] = frozenset(
        {"weighted", "positively_homogeneous", "linear_under_scaling", "permutation_invariant"})
    stateful: ClassVar[bool] = True

    def __attrs_post_init__(self) -> None:
        if isinstance(self.num_groups, bool) or not isinstance(self.num_groups, int) \
                or self.num_groups < 1:
            raise ConfigError(f"invalid num_groups={self.num_groups!r}: must be an integer >= 1")
        check_range("step_size", self.step_size, 0.0, 1e3)

    def reset(self) -> None:
        self._probs = None

    def configure(self, num_tasks: int) -> None:
        self._check_groups(int(num_tasks))

    def _check_groups(self, K: int) -> None:
        if self.num_groups > K:
            raise ConfigError(f"go4align: num_groups={self.num_groups} exceeds the {K} tasks; "
                              f"choose 1 <= num_groups <= {K}")

    def loss_weights(self, losses: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        L = losses_vector(losses, None, "go4align")
        K = L.numel()
        if bool((L <= 0).any()):
            raise GradientError(f"go4align scales by sum(L)/L_k and needs positive task losses, "
                                f"got {L.tolist()}")
        groups = min(self.num_groups, K)  # K = 1 never reaches here (the base class answers)
        self._check_groups(K)
        p = self._probs if self._probs is not None and self._probs.numel() == K \
            else torch.full((K,), 1.0 / K, dtype=torch.float64)
        # p ⊙ e^{-ηL}, normalised; shifting ηL by its minimum leaves the ratio unchanged and
        # keeps e^{-ηL} from underflowing for large losses
        p = p * torch.exp(-self.step_size * (L - L.min()))
        self._probs = p / p.sum()
        gamma = (L.sum() / L) * self._probs
        if groups == 1:
            return torch.full((K,), float(gamma.mean()), dtype=torch.float64)
        return torch.as_tensor(kmeans_1d(gamma.numpy(), groups), dtype=torch.float64)


@hookimpl
def register_aggregators(register):
    register("go4align", GO4Align)
