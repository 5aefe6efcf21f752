"""Random per neuron: K uniformly random incoming weights per neuron (ST Tab. 5 ablation).

The sparse-training paper's "Random" arm (arXiv 2411.18615, §4.4, Table 5) with PSN's
per-neuron budget, so only the *which* differs: ``M_W[r, :]`` = K random positions of row
``r``, drawn from the run's seeded generator (reproducible per seed). Parameters as :mod:`psn`.
"""

from __future__ import annotations

import torch
from mtlkit_plugins.masks._per_neuron import PerNeuronMask
from torch import nn

from mtlkit import hookimpl
from mtlkit.masking import MaskContext


class RandomPerNeuron(PerNeuronMask):
    """Per neuron, K random incoming weights (the paper's Random ablation)."""

    def scores(self, name: str, rows: torch.Tensor, module: nn.Module | None,
               context: MaskContext) -> torch.Tensor:
        # drawn on the CPU generator, so the mask is the same on every device
        return torch.rand(rows.shape, generator=context.generator).to(rows.device)


@hookimpl
def register_mask_strategies(register):
    register("random", RandomPerNeuron)
