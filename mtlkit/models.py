"""Multi-task models: a shared encoder and one head per task.

Sparse training and Recon act on the *shared* parameters only, so every model says explicitly
which parameters are shared and which belong to one task. :class:`MultiTaskModel` is the
hard-parameter-sharing form (``encoder`` + ``heads``); architectures with task-specific parts
inside the encoder (MTAN attention, Recon's branched layers) override
:meth:`shared_named_parameters` and :meth:`task_named_parameters`.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn


class MultiTaskModel(nn.Module):
    """``forward(x) -> {task: output}`` with a shared encoder and per-task heads."""

    def __init__(self, encoder: nn.Module, heads: Mapping[str, nn.Module]) -> None:
        super().__init__()
        if not heads:
            raise ValueError("a multi-task model needs at least one head")
        self.encoder = encoder
        self.heads = nn.ModuleDict(dict(heads))

    @property
    def task_names(self) -> list[str]:
        return list(self.heads.keys())

    def represent(self, x: torch.Tensor) -> torch.Tensor:
        """The shared representation ``z`` the heads read (used by "-UB" gradient modes)."""
        return self.encoder(x)

    def heads_forward(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        return {task: head(z) for task, head in self.heads.items()}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.heads_forward(self.represent(x))

    def shared_named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """Parameters every task's loss depends on (the sparse-training / Recon scope)."""
        return [(f"encoder.{n}", p) for n, p in self.encoder.named_parameters() if p.requires_grad]

    def task_named_parameters(self, task: str) -> list[tuple[str, nn.Parameter]]:
        """Parameters that only ``task``'s loss depends on; they get that task's gradient."""
        return [(f"heads.{task}.{n}", p) for n, p in self.heads[task].named_parameters()
                if p.requires_grad]
