"""The dense mask: every shared coordinate is trainable (ordinary multi-task training)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from mtlkit import hookimpl
from mtlkit.masking import MaskContext, MaskStrategy


class Dense(MaskStrategy):
    """All shared coordinates trainable (no sparse training)."""

    density = 1.0

    def select(self, params: Mapping[str, nn.Parameter], context: MaskContext
               ) -> dict[str, torch.Tensor]:
        return {name: torch.ones_like(p, dtype=torch.bool) for name, p in params.items()}


@hookimpl
def register_mask_strategies(register):
    register("dense", Dense)
