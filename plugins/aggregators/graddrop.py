"""GradDrop: gradient sign dropout.

Chen et al., "Just Pick a Sign: Optimizing Deep Multitask Models with Gradient Sign Dropout",
NeurIPS 2020, https://arxiv.org/abs/2010.06808.

Per coordinate ``x``, the positive-sign purity ``P = ½ (1 + Σ_k g_k[x] / Σ_k |g_k[x]|)`` and a
uniform draw ``U[x]``: keep the positive contributions where ``P > U``, the negative ones where
``P < U``,

.. math:: d[x] = \\ell\\, \\textstyle\\sum_k g_k[x] + (1-\\ell)
          \\big(\\mathbb{1}[P>U] \\sum_k g_k^+[x] + \\mathbb{1}[P<U] \\sum_k g_k^-[x]\\big)

with leak ``ℓ`` (0 in the paper's main setting). The paper applies it to activation gradients;
here, as in the CAGrad/FAMO code bases, it is applied to the parameter Jacobian. Needs the full
``J`` (element-wise); ``O(K n)`` with two ``n``-sized temporaries. Draws come from
``context["generator"]`` or the aggregator's own generator seeded with ``seed``.

Properties: permutation invariant (the draws are per coordinate, not per task), linear under
scaling (``P`` is scale-free). Not weighted: coordinates are dropped individually.
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
import torch
from mtlkit_plugins.aggregators._solvers import check_range, make_generator, pick_generator

from mtlkit import hookimpl
from mtlkit.aggregation import Aggregator


@attrs.define(eq=False)
class GradDrop(Aggregator):
    """Keep one sign per coordinate, chosen at random with the sign purity."""

    leak: float = 0.0
    seed: int = attrs.field(default=0, converter=int)
    _generator: torch.Generator = attrs.field(init=False, repr=False)

    properties: ClassVar[frozenset[str]] = frozenset(
        {"permutation_invariant", "positively_homogeneous"})
    stateful: ClassVar[bool] = True  # its own generator advances between calls

    def __attrs_post_init__(self) -> None:
        check_range("leak", self.leak, 0.0, 1.0)
        self.reset()

    def reset(self) -> None:
        self._generator = make_generator(self.seed)

    def aggregate(self, J: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        gen = pick_generator(context, self._generator)
        U = torch.rand(J.shape[1], generator=gen, device=gen.device, dtype=J.dtype)
        U = U.to(J.device)
        pos = J.clamp(min=0).sum(dim=0)
        neg = J.clamp(max=0).sum(dim=0)
        total = pos + neg
        # P = 1/2 (1 + sum/sum|.|); coordinates where every task is 0 give P = 1/2, d = 0.
        P = 0.5 * (1 + total / (pos - neg).clamp_min(torch.finfo(J.dtype).tiny))
        d = torch.where(P > U, pos, 0.0) + torch.where(P < U, neg, 0.0)
        if self.leak:
            d = self.leak * total + (1 - self.leak) * d
        return d


@hookimpl
def register_aggregators(register):
    register("graddrop", GradDrop)
