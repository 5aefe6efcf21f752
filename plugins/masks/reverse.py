"""Reverse PSN: per neuron, the K *lowest*-magnitude incoming weights (ST Tab. 5 ablation).

The sparse-training paper's "Reverse" arm (arXiv 2411.18615, §4.4, Table 5): the same number
of trainable weights per neuron as PSN, chosen by ``bottomk(|W[r, :]|)``. It tests whether
magnitude matters (the paper finds PSN > Reverse). Parameters as :mod:`psn`.
"""

from __future__ import annotations

import torch
from mtlkit_plugins.masks._per_neuron import PerNeuronMask
from torch import nn

from mtlkit import hookimpl
from mtlkit.masking import MaskContext


class Reverse(PerNeuronMask):
    """Per neuron, the K lowest-|w| incoming weights (the paper's Reverse ablation)."""

    largest = False

    def scores(self, name: str, rows: torch.Tensor, module: nn.Module | None,
               context: MaskContext) -> torch.Tensor:
        return rows.abs()


@hookimpl
def register_mask_strategies(register):
    register("reverse", Reverse)
