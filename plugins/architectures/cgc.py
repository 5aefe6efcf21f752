"""CGC: Customized Gate Control, the single-level form of PLE (Tang et al., RecSys 2020,
"Progressive Layered Extraction (PLE): A Novel Multi-Task Learning (MTL) Model for Personalized
Recommendations", doi 10.1145/3383313.3412236, Sec. 4.2); LibMTL ``LibMTL/architecture/CGC.py``.

MMoE where each task also owns experts: ``S`` shared experts ``f^s_e`` and ``E_t`` experts
``f^t_e`` of task ``t`` (copies of the benchmark's encoder); task ``t``'s gate mixes its own
and the shared ones,

    z_t = sum_e g_t(x)_e * [f^s_1(x), ..., f^s_S(x), f^t_1(x), ..., f^t_{E_t}(x)]_e,
    g_t(x) = softmax(W_t vec(x) + b_t).

Why the split is exact: shared experts enter every ``z_t`` (**shared**); task ``t``'s experts
and gate enter ``z_t`` only (**task-specific**). Unlike MMoE, a part of the encoder capacity is
thus outside the sparse-training / Jacobian scope: masks act on the shared experts only.

Parameters: ``num_shared`` and ``num_specific`` (LibMTL's ``num_experts = [shared, per
task...]``; here one count for every task, default 2 and 1), ``input_shape``, ``expert_init``
(see :mod:`mtlkit_plugins.architectures.mmoe`).
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


class CGCBody(ArchitectureBody):
    """Shared experts + per-task experts, one gate per task over both."""

    def __init__(self, encoder: nn.Module, tasks: Sequence[str], input_shape: Sequence[int],
                 num_shared: int, num_specific: int, expert_init: str = "reset") -> None:
        super().__init__(tasks)
        self.shared_experts = nn.ModuleList([clone(encoder, expert_init)
                                             for _ in range(num_shared)])
        self.task_experts = nn.ModuleDict({
            t: nn.ModuleList([clone(encoder, expert_init) for _ in range(num_specific)])
            for t in self.task_names})
        self.gates = nn.ModuleDict({t: nn.Linear(prod(input_shape), num_shared + num_specific)
                                    for t in self.task_names})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shared = [e(x) for e in self.shared_experts]
        flat = x.flatten(1)
        out = []
        for t in self.task_names:
            experts = torch.stack(shared + [e(x) for e in self.task_experts[t]])
            out.append(mix(experts, torch.softmax(self.gates[t](flat), dim=-1)))
        return torch.stack(out, dim=1)

    def owned(self, task: str) -> tuple[str, ...]:
        return (f"task_experts.{task}", f"gates.{task}")


class CGC(Architecture):
    """The CGC transform; see the module doc."""

    name: ClassVar[str] = "cgc"
    needs_input_shape: ClassVar[bool] = True

    def __init__(self, num_shared: int = 2, num_specific: int = 1,
                 input_shape: Sequence[int] | None = None, expert_init: str = "reset") -> None:
        super().__init__(input_shape, expert_init)
        self.num_shared = check_int("num_shared", num_shared, 1)
        self.num_specific = check_int("num_specific", num_specific, 0)

    def body(self, encoder: nn.Module, tasks: list[str],
             input_shape: tuple[int, ...] | None) -> CGCBody:
        return CGCBody(encoder, tasks, input_shape, self.num_shared, self.num_specific,
                       self.expert_init)


@hookimpl
def register_model_transforms(register):
    register("cgc", CGC)
