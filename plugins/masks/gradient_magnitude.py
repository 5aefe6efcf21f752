"""Gradient-based selection: per neuron, the top-K incoming weights by accumulated |grad|.

Scores every shared weight by ``sum_b |d L_mean(batch b) / d w|`` over ``warmup_batches``
training batches (the mean task loss at the current weights), then keeps the top-K per neuron
as PSN does (the per-neuron gradient rule of the same authors' GPS code, ``utils/pruning.py``).
The sparse-training paper (arXiv 2411.18615, §3.4) selects **once** by magnitude, arguing that
gradient scores and mask updates cost too much in MTL; this strategy is mtlkit going further.

``reselect_every=N`` re-selects every N optimizer steps from fresh warm-up batches. Trade-off:
the mask can follow the tasks as they learn, but each re-selection costs ``warmup_batches``
extra forward/backward passes, the paper's "fixed subspace" argument (ST §3.3: an L2-to-init
constraint on the frozen coordinates) no longer holds, and coordinates that become frozen keep
their current (trained) values while newly trainable ones start from the optimizer state they
had when frozen (zero gradients since then). Parameters as :mod:`psn`, plus the two above.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

import torch
from mtlkit_plugins.masks._per_neuron import PerNeuronMask, neuron_rows
from torch import nn

from mtlkit import hookimpl
from mtlkit.errors import ConfigError, invalid_value
from mtlkit.masking import MaskContext


class GradientMagnitude(PerNeuronMask):
    """Per neuron, the top-K weights by |grad| over warm-up batches; optional re-selection."""

    needs_gradients: ClassVar[bool] = True

    def __init__(self, density: float | None = None, k: int | None = None,
                 include: str | Sequence[str] | None = None,
                 exclude: str | Sequence[str] | None = None,
                 bias: str = "train", norm: str = "freeze", warmup_batches: int = 4,
                 reselect_every: int | None = None) -> None:
        super().__init__(density=density, k=k, include=include, exclude=exclude, bias=bias,
                         norm=norm)
        for field, value in (("warmup_batches", warmup_batches),
                             ("reselect_every", reselect_every)):
            if value is None and field == "reselect_every":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise invalid_value(field, value, "must be an integer >= 1")
        self.warmup_batches = warmup_batches
        self.reselect_every = reselect_every  # type: ignore[misc]  # per instance here
        self._grads: dict[str, torch.Tensor] = {}

    def prepare(self, weights: Mapping[str, torch.Tensor], context: MaskContext) -> None:
        if context.gradient_magnitudes is None:
            raise ConfigError("mask 'gradient' needs warm-up gradients, which only the trainer "
                              "provides (MaskContext.gradient_magnitudes is None)")
        self._grads = context.gradient_magnitudes(self.warmup_batches)

    def scores(self, name: str, rows: torch.Tensor, module: nn.Module | None,
               context: MaskContext) -> torch.Tensor:
        return neuron_rows(self._grads[name], module).to(rows.device)

    def describe(self):
        return {**super().describe(), "warmup_batches": self.warmup_batches,
                "reselect_every": self.reselect_every}


@hookimpl
def register_mask_strategies(register):
    register("gradient", GradientMagnitude)
