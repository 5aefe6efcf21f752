"""MMoE: Multi-gate Mixture-of-Experts (Ma et al., KDD 2018, "Modeling Task Relationships in
Multi-task Learning with Multi-gate Mixture-of-Experts", doi 10.1145/3219819.3220007); LibMTL
``LibMTL/architecture/MMoE.py``.

``E`` experts, each a copy of the benchmark's encoder, are shared by all tasks. Task ``t`` has a
gate ``g_t(x) = softmax(W_t vec(x) + b_t)`` (a linear map of the flattened input) and reads the
mixture

    z_t = sum_e g_t(x)_e * f_e(x).

Why the split is exact: every task's mixture contains every expert (a softmax is never exactly
zero), so the **experts are shared**; gate ``t`` only enters ``z_t``, so the **gates are
task-specific** (LibMTL's ``get_share_params`` is also the experts only). Sparse-training masks
therefore select neurons of the experts; the gates are trained fully on their task's gradient.

Parameters: ``num_experts`` (LibMTL's ``num_experts[0]``, default 4), ``input_shape`` (one
example's shape; LibMTL's ``img_size``), ``expert_init`` (``reset``: independent random
experts; ``copy``: every expert starts from the encoder's weights, e.g. pre-trained).
"""

from __future__ import annotations

from collections.abc import Sequence
from math import prod
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


class MMoEBody(ArchitectureBody):
    """Shared experts, one softmax gate per task on the flattened input."""

    def __init__(self, encoder: nn.Module, tasks: Sequence[str], input_shape: Sequence[int],
                 num_experts: int, expert_init: str = "reset") -> None:
        super().__init__(tasks)
        self.experts = nn.ModuleList([clone(encoder, expert_init) for _ in range(num_experts)])
        self.gates = nn.ModuleDict({t: nn.Linear(prod(input_shape), num_experts)
                                    for t in self.task_names})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        experts = torch.stack([e(x) for e in self.experts])
        flat = x.flatten(1)
        return torch.stack([mix(experts, torch.softmax(self.gates[t](flat), dim=-1))
                            for t in self.task_names], dim=1)

    def owned(self, task: str) -> tuple[str, ...]:
        return (f"gates.{task}",)


class MMoE(Architecture):
    """The MMoE transform; see the module doc."""

    name: ClassVar[str] = "mmoe"
    needs_input_shape: ClassVar[bool] = True

    def __init__(self, num_experts: int = 4, input_shape: Sequence[int] | None = None,
                 expert_init: str = "reset") -> None:
        super().__init__(input_shape, expert_init)
        self.num_experts = check_int("num_experts", num_experts, 1)

    def body(self, encoder: nn.Module, tasks: list[str],
             input_shape: tuple[int, ...] | None) -> MMoEBody:
        return MMoEBody(encoder, tasks, input_shape, self.num_experts, self.expert_init)


@hookimpl
def register_model_transforms(register):
    register("mmoe", MMoE)
