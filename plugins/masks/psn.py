"""PSN, parameter selection per neuron: the sparse-training paper's mask (arXiv 2411.18615).

Once, before training, for every neuron of the shared encoder keep the top-K incoming weights
by magnitude as trainable (ST §3.4, Fig. 3):

.. math:: M_{W}[r, :] = \\mathrm{topk}_{\\min(K, \\mathrm{fan\\_in})}(|W[r, :]|)

for every row ``r`` of a Linear weight, or output channel of a Conv weight flattened over
``in*kh*kw``; the rest of the encoder stays frozen at its initial value and the update is
``theta <- theta - lr * M * d`` (Eq. 8-9). K is an absolute count (``k=``); a requested
``density=`` is converted to the K whose real trainable fraction is closest (default 0.6, the
paper's rule of thumb for randomly initialised models). Scope, bias and normalisation policies:
see :mod:`mtlkit_plugins.masks._per_neuron`.
"""

from __future__ import annotations

import torch
from mtlkit_plugins.masks._per_neuron import PerNeuronMask
from torch import nn

from mtlkit import hookimpl
from mtlkit.masking import MaskContext


class PSN(PerNeuronMask):
    """Per neuron, the top-K incoming weights by |w| (the sparse-training paper's rule)."""

    def scores(self, name: str, rows: torch.Tensor, module: nn.Module | None,
               context: MaskContext) -> torch.Tensor:
        return rows.abs()


@hookimpl
def register_mask_strategies(register):
    register("psn", PSN)
