"""Cross-stitch networks (Misra et al., CVPR 2016, "Cross-stitch Networks for Multi-task
Learning", arXiv 1604.03539); LibMTL ``LibMTL/architecture/Cross_stitch.py``.

One column per task, each a copy of the benchmark's encoder split into stages
``s_0 .. s_{L-1}`` (see :func:`~mtlkit_plugins.architectures._base.stages`). Between stages a
cross-stitch unit feeds column ``t`` a learned linear combination of all columns' outputs:

    h^0_t = s^t_0(x),   h^{i+1}_t = s^t_{i+1}( sum_j a^i_{tj} h^i_j ),   z_t = h^{L-1}_t.

Why the split is exact: column ``t``'s **last stage** and row ``t`` of the **last unit**
(``a^{L-2}_{t.}``) enter ``z_t`` only: task-specific. Every earlier stage of every column
and every earlier unit row reaches every task through the next unit (a learned weight may
approach zero, but the path stays in every task's graph), so they are shared. (LibMTL's
``get_share_params`` returns the whole encoder, last stages included; those would only add
zero rows to the Jacobian and spend mask density on parameters one task trains anyway.)
Each unit row is its own ``nn.Parameter`` of size ``K`` so that the split falls on parameter
boundaries.

Initialisation: ``a_tt = alpha_self`` (default 0.9) and ``a_tj = (1 - alpha_self) / (K - 1)``,
the paper's ``(alpha_S, alpha_D) = (0.9, 0.1)`` for two tasks (Sec. 4.1); LibMTL starts from all
ones. ``expert_init``: ``reset`` (independent random columns) or ``copy`` (every column from the
encoder's weights; the paper initialises columns from single-task networks).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from mtlkit_plugins.architectures._base import (
    Architecture,
    ArchitectureBody,
    clone,
    stages,
)
from torch import nn

from mtlkit import hookimpl
from mtlkit.errors import ConfigError


class ColumnsBody(ArchitectureBody):
    """One stage-split copy of the encoder per task and one weight row per task and boundary;
    :meth:`combine` says how a row turns the previous outputs into a column's input."""

    def __init__(self, encoder: nn.Module, tasks: Sequence[str], init_row: torch.Tensor | None,
                 expert_init: str = "reset") -> None:
        super().__init__(tasks)
        split = stages(encoder)
        if len(split) < 2:
            raise ConfigError(f"{type(self).__name__} needs an encoder of at least 2 stages "
                              f"(features are exchanged between stages); "
                              f"{type(encoder).__name__} has {len(split)}")
        self.depth = len(split)
        k = len(self.task_names)
        self.columns = nn.ModuleDict({
            t: nn.ModuleList([clone(s, expert_init) for s in split]) for t in self.task_names})
        rows = []
        for _ in range(self.depth - 1):
            unit = nn.ParameterDict()
            for i, t in enumerate(self.task_names):
                row = torch.zeros(k) if init_row is None else init_row.roll(i)
                unit[t] = nn.Parameter(row.clone())
            rows.append(unit)
        self.units = nn.ModuleList(rows)

    def combine(self, row: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return torch.einsum("j,jb...->b...", row, h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.stack([self.columns[t][0](x) for t in self.task_names])
        for i in range(1, self.depth):
            unit = self.units[i - 1]
            h = torch.stack([self.columns[t][i](self.combine(unit[t], h))
                             for t in self.task_names])
        return h.transpose(0, 1)

    def owned(self, task: str) -> tuple[str, ...]:
        return (f"columns.{task}.{self.depth - 1}", f"units.{self.depth - 2}.{task}")


class CrossStitchBody(ColumnsBody):
    """Columns mixed linearly by the cross-stitch units."""


class CrossStitch(Architecture):
    """The cross-stitch transform; see the module doc."""

    name: ClassVar[str] = "cross_stitch"

    def __init__(self, alpha_self: float = 0.9, expert_init: str = "reset") -> None:
        super().__init__(None, expert_init)
        if isinstance(alpha_self, bool) or not isinstance(alpha_self, (int, float)) \
                or not 0 <= alpha_self <= 1:
            raise ConfigError(f"invalid alpha_self={alpha_self!r}: must be in [0, 1]")
        self.alpha_self = float(alpha_self)

    def body(self, encoder: nn.Module, tasks: list[str],
             input_shape: tuple[int, ...] | None) -> CrossStitchBody:
        k = len(tasks)
        row = torch.full((k,), (1 - self.alpha_self) / (k - 1) if k > 1 else 0.0)
        row[0] = self.alpha_self if k > 1 else 1.0
        return CrossStitchBody(encoder, tasks, row, self.expert_init)


@hookimpl
def register_model_transforms(register):
    register("cross_stitch", CrossStitch)
