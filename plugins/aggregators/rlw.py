"""Random loss weighting (RLW): Lin et al., "Reasonable Effectiveness of Random Weighting",
TMLR 2022, https://arxiv.org/abs/2111.10603.

.. math:: \\lambda \\sim \\mathcal{N}(0, I_K), \\quad w = \\mathrm{softmax}(\\lambda),
          \\quad d = \\sum_k w_k g_k

New weights every call, drawn from ``context["generator"]`` (the trainer's seeded generator)
when given, else from the aggregator's own generator seeded with ``seed``: runs are
deterministic. A loss-level method: the weights need neither ``J`` nor the Gramian, so the
trainer takes one backward pass of ``sum_k w_k L_k`` (``requires = "losses"``); called on a
Jacobian it returns ``w^T J`` and does not need the losses.

Properties: weighted, linear under scaling (the weights do not depend on ``J``). Not
permutation invariant (weight ``k`` goes to row ``k`` whatever the row holds).

Defaults: ``seed = 0``; the paper's distribution is the standard normal.
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
import torch
from mtlkit_plugins.aggregators._solvers import make_generator, pick_generator

from mtlkit import hookimpl
from mtlkit.aggregation import LossWeighting


@attrs.define(eq=False)
class RLW(LossWeighting):
    """Random loss weighting: softmax of standard-normal draws, new every step."""

    seed: int = attrs.field(default=0, converter=int)
    _generator: torch.Generator = attrs.field(init=False, repr=False)

    properties: ClassVar[frozenset[str]] = frozenset(
        {"weighted", "positively_homogeneous", "linear_under_scaling"})
    stateful: ClassVar[bool] = True  # its own generator advances between calls

    def __attrs_post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._generator = make_generator(self.seed)

    def _draw(self, K: int, context: dict[str, Any]) -> torch.Tensor:
        gen = pick_generator(context, self._generator)
        z = torch.randn(K, generator=gen, dtype=torch.float64, device=gen.device)
        return torch.softmax(z, dim=0).cpu()

    def loss_weights(self, losses: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        return self._draw(int(torch.as_tensor(losses).numel()), context)

    def aggregate(self, J: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        return self._draw(J.shape[0], context).to(device=J.device, dtype=J.dtype) @ J


@hookimpl
def register_aggregators(register):
    register("rlw", RLW)
