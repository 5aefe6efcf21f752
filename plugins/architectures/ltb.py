"""LTB: Learning to Branch (Guo, Lee & Ulbricht, ICML 2020, "Learning to Branch for Multi-Task
Learning", arXiv 2006.01895), in LibMTL's form ``LibMTL/architecture/LTB.py``.

One column per task (a stage-split copy of the encoder, as cross-stitch). Before stage
``i >= 1``, column ``t`` takes the output of **one** parent column chosen by a learned
categorical distribution ``softmax(alpha^{i-1}_t)`` over the ``K`` columns of stage ``i-1``:
during training a straight-through Gumbel-softmax sample (hard one-hot forward, soft
gradient, temperature ``tau``), so the tree of which task reuses which column is learned by
gradient descent; columns no task picks are pruned in effect.

Why the split is exact: as cross-stitch, column ``t``'s last stage and the last row
``alpha^{L-2}_t`` reach ``z_t`` only (task-specific); every earlier stage and row reaches every
task through the straight-through gradient of the next choice (zero-valued parents still pass
a gradient to ``alpha``), so they are shared.

Schedule (LibMTL's is per epoch: all-ones mixing for the first 1% of epochs, then
``tau = epochs / 20 / sqrt(epoch + 1)``; the model cannot see the trainer's epoch, so the
schedule here counts training forward passes in a buffer, which the mask selection's extra
passes restore):

* the first ``warmup`` passes use the soft ``softmax(alpha)`` mixture (every parent, a
  gradient for every ``alpha``) instead of LibMTL's fixed all-ones sum;
* then ``tau = tau0 / sqrt(1 + passes / decay)`` (defaults ``tau0 = 5``, ``decay = 100``:
  LibMTL's ``epochs / 20`` for 100 epochs, one "epoch" per 100 passes);
* evaluation uses the most likely parent (``argmax alpha``), deterministically (LibMTL samples
  at evaluation too).

Parameters: ``warmup`` (default 100), ``tau0``, ``decay``, ``expert_init``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from mtlkit_plugins.architectures._base import Architecture, check_int
from mtlkit_plugins.architectures.cross_stitch import ColumnsBody
from torch import nn
from torch.nn import functional as F

from mtlkit import hookimpl
from mtlkit.errors import ConfigError


class LTBBody(ColumnsBody):
    """Columns whose inputs are Gumbel-softmax choices of one parent column."""

    def __init__(self, encoder: nn.Module, tasks: Sequence[str], warmup: int, tau0: float,
                 decay: float, expert_init: str = "reset") -> None:
        super().__init__(encoder, tasks, None, expert_init)
        self.warmup = warmup
        self.tau0 = tau0
        self.decay = decay
        self.register_buffer("passes", torch.zeros((), dtype=torch.long))

    def combine(self, row: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        if not self.training:
            weights = F.one_hot(row.argmax(), row.numel()).to(h.dtype)
        elif int(self.passes) < self.warmup:
            weights = torch.softmax(row, dim=0)
        else:
            tau = self.tau0 / (1 + int(self.passes) / self.decay) ** 0.5
            weights = F.gumbel_softmax(row, tau=tau, hard=True, dim=0)
        return super().combine(weights, h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        if self.training:
            self.passes += 1
        return out


class LTB(Architecture):
    """The learning-to-branch transform; see the module doc."""

    name: ClassVar[str] = "ltb"

    def __init__(self, warmup: int = 100, tau0: float = 5.0, decay: float = 100.0,
                 expert_init: str = "reset") -> None:
        super().__init__(None, expert_init)
        self.warmup = check_int("warmup", warmup, 0)
        for name, v in (("tau0", tau0), ("decay", decay)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise ConfigError(f"invalid {name}={v!r}: must be a number > 0")
        self.tau0 = float(tau0)
        self.decay = float(decay)

    def body(self, encoder: nn.Module, tasks: list[str],
             input_shape: tuple[int, ...] | None) -> LTBBody:
        return LTBBody(encoder, tasks, self.warmup, self.tau0, self.decay, self.expert_init)


@hookimpl
def register_model_transforms(register):
    register("ltb", LTB)
