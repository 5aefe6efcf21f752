"""PLE: Progressive Layered Extraction (Tang et al., RecSys 2020, "Progressive Layered
Extraction (PLE): A Novel Multi-Task Learning (MTL) Model for Personalized Recommendations",
doi 10.1145/3383313.3412236, Sec. 4.3); LibMTL ``LibMTL/architecture/PLE.py``.

CGC stacked over the encoder's stages ``s_0 .. s_{L-1}`` (see
:func:`~mtlkit_plugins.architectures._base.stages`). Level ``i`` has ``S`` shared experts and
``E`` experts per task, copies of stage ``s_i``; each task keeps its own stream ``h_t`` and a
shared stream ``h_s`` runs alongside (all start at ``x``):

    h_t <- sum_e g^i_t(h_t)_e * [shared experts(h_s), task-t experts(h_t)]_e
    h_s <- sum_e g^i_s(h_s)_e * [shared experts(h_s), every task's experts(h_t)]_e   (i < L-1)

with softmax gates on the flattened stream; ``z_t`` is ``h_t`` after the last level. This is
the paper's Fig. 5 (the shared gate feeds the next level's shared experts). LibMTL's version
drops the shared stream and runs the shared experts on each task's stream instead (``K`` times
the shared compute); with the paper's form the shared experts run once per level.

Why the split is exact: at the **last** level, task ``t``'s experts and gate enter ``z_t``
only; at the level before it, task ``t``'s gate output ``h_t`` feeds only its own last-level
experts and gate (the shared stream reads ``h_s``), so that gate is task ``t``'s too. Every
other parameter reaches every task: task experts below the last level feed the shared gate,
task gates below the last two levels feed such experts, and shared experts and gates feed
every task's gate. So: task-specific = ``t``'s last-level experts, ``t``'s gates at the last
two levels; shared = the rest. (LibMTL's ``get_share_params`` is the shared experts only, so
its task experts and gates at lower levels, which every task's gradient reaches through its
design as well, are left out of the Jacobian there.)

Parameters: ``num_shared``, ``num_specific`` (per level; defaults 1 and 1), ``input_shape``
(gate sizes come from a dry run, as LibMTL does), ``expert_init``.
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
    stages,
)
from torch import nn

from mtlkit import hookimpl


def _gate(n_in: int, n_out: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(1), nn.Linear(n_in, n_out), nn.Softmax(dim=-1))


class PLEBody(ArchitectureBody):
    """Levels of shared and task experts with task gates and a shared gate."""

    def __init__(self, encoder: nn.Module, tasks: Sequence[str], input_shape: Sequence[int],
                 num_shared: int, num_specific: int, expert_init: str = "reset") -> None:
        super().__init__(tasks)
        split = stages(encoder)
        self.depth = len(split)
        k = len(self.task_names)
        sizes = [prod(input_shape)]
        with torch.no_grad():  # stream sizes for the gates, as LibMTL's dry run
            x = torch.zeros(1, *input_shape)
            was = encoder.training
            encoder.eval()
            for s in split:
                x = s(x)
                sizes.append(x[0].numel())
            encoder.train(was)
        self.shared_experts = nn.ModuleList()
        self.task_experts = nn.ModuleList()
        self.task_gates = nn.ModuleList()
        self.shared_gates = nn.ModuleList()
        for i, s in enumerate(split):
            self.shared_experts.append(
                nn.ModuleList([clone(s, expert_init) for _ in range(num_shared)]))
            self.task_experts.append(nn.ModuleDict({
                t: nn.ModuleList([clone(s, expert_init) for _ in range(num_specific)])
                for t in self.task_names}))
            self.task_gates.append(nn.ModuleDict({
                t: _gate(sizes[i], num_shared + num_specific) for t in self.task_names}))
            if i < self.depth - 1:
                self.shared_gates.append(_gate(sizes[i], num_shared + k * num_specific))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h_s = x
        h = dict.fromkeys(self.task_names, x)
        for i in range(self.depth):
            shared = [e(h_s) for e in self.shared_experts[i]]
            own = {t: [e(h[t]) for e in self.task_experts[i][t]] for t in self.task_names}
            new = {t: mix(torch.stack(shared + own[t]), self.task_gates[i][t](h[t]))
                   for t in self.task_names}
            if i < self.depth - 1:
                every = shared + [o for t in self.task_names for o in own[t]]
                h_s = mix(torch.stack(every), self.shared_gates[i](h_s))
            h = new
        return torch.stack([h[t] for t in self.task_names], dim=1)

    def owned(self, task: str) -> tuple[str, ...]:
        last = self.depth - 1
        gates = [f"task_gates.{i}.{task}" for i in (last - 1, last) if i >= 0]
        return (f"task_experts.{last}.{task}", *gates)


class PLE(Architecture):
    """The PLE transform; see the module doc."""

    name: ClassVar[str] = "ple"
    needs_input_shape: ClassVar[bool] = True

    def __init__(self, num_shared: int = 1, num_specific: int = 1,
                 input_shape: Sequence[int] | None = None, expert_init: str = "reset") -> None:
        super().__init__(input_shape, expert_init)
        self.num_shared = check_int("num_shared", num_shared, 1)
        self.num_specific = check_int("num_specific", num_specific, 1)

    def body(self, encoder: nn.Module, tasks: list[str],
             input_shape: tuple[int, ...] | None) -> PLEBody:
        return PLEBody(encoder, tasks, input_shape, self.num_shared, self.num_specific,
                       self.expert_init)


@hookimpl
def register_model_transforms(register):
    register("ple", PLE)
