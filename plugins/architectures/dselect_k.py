"""DSelect-k: differentiable selection of ``k`` experts (Hazimeh et al., NeurIPS 2021,
"DSelect-k: Differentiable Selection in the Mixture of Experts with Applications to Multi-Task
Learning", arXiv 2106.03760); LibMTL ``LibMTL/architecture/DSelect_k.py``, after the official
TensorFlow code (google-research ``dselect_k_moe``).

Shared experts as in MMoE; task ``t``'s gate is ``k`` differentiable single-expert selectors.
Expert ``e`` has the binary code ``c_e`` of ``m = ceil(log2 E)`` bits. Selector ``i`` maps the
flattened input to ``m`` logits ``u_i`` (``z_logits``) and puts probability

    r_i(e) = prod_j  S(u_ij) if c_ej = 1 else 1 - S(u_ij)

on expert ``e``, with the smooth step ``S(u) = 0`` for ``u <= -gamma/2``, ``1`` for
``u >= gamma/2`` and ``-2 u^3 / gamma^3 + 3 u / (2 gamma) + 1/2`` between (so a selector can
reach an exact one-hot choice: *sparse* gating, unlike MMoE's softmax). The ``k`` selectors are
weighted by ``softmax(w_logits(x))``: ``z_t = sum_e (sum_i a_i r_i(e)) f_e(x)``.

Why the split is exact: the experts are shared (a saturated selector can give an expert an
exactly zero weight, but it stays in the graph: the gradient is a zero, as for any shared
parameter a task does not use at that point); ``z_logits[t]`` and ``w_logits[t]`` enter ``z_t``
only (task-specific).

Differences from LibMTL, both because the trainer optimises the task losses and nothing else:

* no entropy regulariser (the paper's optional term pushing selectors to one-hot; LibMTL
  calls ``backward`` on it inside ``forward``, which would bypass the aggregator);
* when ``E`` is not a power of 2, the ``2^m - E`` unused codes are folded onto experts
  ``c mod E`` instead of LibMTL's ``1 / sum r_i`` penalty: the selector stays a probability
  distribution over the existing experts without an extra loss.

Parameters: ``num_experts`` (default 4), ``num_nonzeros`` (``k``, default 2), ``gamma``
(LibMTL's ``kgamma``, default 1.0), ``input_shape``, ``expert_init``. Initialisation as the
reference: ``z_logits`` uniform in ``±gamma/100``, ``w_logits`` uniform in ``±0.05``.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import ceil, log2, prod
from typing import ClassVar

import torch
from mtlkit_plugins.architectures._base import (
    Architecture,
    ArchitectureBody,
    check_int,
    clone,
    mix,
)
from torch import nn

from mtlkit import hookimpl
from mtlkit.errors import ConfigError


def smooth_step(u: torch.Tensor, gamma: float) -> torch.Tensor:
    """The cubic smooth step of DSelect-k (0 below ``-gamma/2``, 1 above ``gamma/2``)."""
    inner = -2.0 / gamma ** 3 * u ** 3 + 1.5 / gamma * u + 0.5
    return torch.where(u <= -gamma / 2, torch.zeros_like(u),
                       torch.where(u >= gamma / 2, torch.ones_like(u), inner))


class DSelectKBody(ArchitectureBody):
    """Shared experts; per task ``k`` binary-code selectors and their softmax weights."""

    def __init__(self, encoder: nn.Module, tasks: Sequence[str], input_shape: Sequence[int],
                 num_experts: int, num_nonzeros: int, gamma: float,
                 expert_init: str = "reset") -> None:
        super().__init__(tasks)
        self.experts = nn.ModuleList([clone(encoder, expert_init) for _ in range(num_experts)])
        self.bits = max(1, ceil(log2(num_experts)))
        self.k = num_nonzeros
        self.gamma = gamma
        n_in = prod(input_shape)
        self.z_logits = nn.ModuleDict({t: nn.Linear(n_in, num_nonzeros * self.bits)
                                       for t in self.task_names})
        self.w_logits = nn.ModuleDict({t: nn.Linear(n_in, num_nonzeros)
                                       for t in self.task_names})
        with torch.no_grad():
            for p in self.z_logits.parameters():
                p.uniform_(-gamma / 100, gamma / 100)
            for p in self.w_logits.parameters():
                p.uniform_(-0.05, 0.05)
        codes = torch.arange(2 ** self.bits)
        # bit j of code c, most significant first (np.binary_repr's order in the reference)
        bits = (codes[:, None] >> torch.arange(self.bits - 1, -1, -1)) & 1
        self.register_buffer("codes", bits.bool(), persistent=False)
        fold = torch.zeros(2 ** self.bits, num_experts)
        fold[codes, codes % num_experts] = 1.0
        self.register_buffer("fold", fold, persistent=False)

    def expert_weights(self, task: str, flat: torch.Tensor) -> torch.Tensor:
        """``[B, E]``: the task's mixture weights over the experts (rows sum to 1)."""
        u = self.z_logits[task](flat).view(-1, self.k, 1, self.bits)
        s = smooth_step(u, self.gamma)
        r = torch.where(self.codes, s, 1 - s).prod(dim=-1)  # [B, k, 2^m]
        a = torch.softmax(self.w_logits[task](flat), dim=-1)  # [B, k]
        return torch.einsum("bi,bic->bc", a, r) @ self.fold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        experts = torch.stack([e(x) for e in self.experts])
        flat = x.flatten(1)
        return torch.stack([mix(experts, self.expert_weights(t, flat))
                            for t in self.task_names], dim=1)

    def owned(self, task: str) -> tuple[str, ...]:
        return (f"z_logits.{task}", f"w_logits.{task}")


class DSelectK(Architecture):
    """The DSelect-k transform; see the module doc."""

    name: ClassVar[str] = "dselect_k"
    needs_input_shape: ClassVar[bool] = True

    def __init__(self, num_experts: int = 4, num_nonzeros: int = 2, gamma: float = 1.0,
                 input_shape: Sequence[int] | None = None, expert_init: str = "reset") -> None:
        super().__init__(input_shape, expert_init)
        self.num_experts = check_int("num_experts", num_experts, 2)
        self.num_nonzeros = check_int("num_nonzeros", num_nonzeros, 1)
        if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not gamma > 0:
            raise ConfigError(f"invalid gamma={gamma!r}: must be a number > 0")
        self.gamma = float(gamma)

    def body(self, encoder: nn.Module, tasks: list[str],
             input_shape: tuple[int, ...] | None) -> DSelectKBody:
        return DSelectKBody(encoder, tasks, input_shape, self.num_experts,
                            self.num_nonzeros, self.gamma, self.expert_init)


@hookimpl
def register_model_transforms(register):
    register("dselect_k", DSelectK)
