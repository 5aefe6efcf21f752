"""Global magnitude: the largest |w| over the whole encoder scope (ST Tab. 5 "Global").

The sparse-training paper's "Global" ablation (arXiv 2411.18615, §4.4, Table 5, Fig. 6): the
same number of trainable weights as PSN would select, but chosen as the global top-k of ``|w|``
over every in-scope weight tensor at once, so layers with large weights get more and some
neurons may get none (the paper finds PSN > Random > Global: spreading matters). With
``density=`` the budget is the one PSN's K gives; with ``k=`` it is ``sum_rows min(k, fan_in)``.
Parameters as :mod:`psn`.
"""

from __future__ import annotations

from typing import Any

import torch
from mtlkit_plugins.masks._per_neuron import PerNeuronMask, neuron_rows

from mtlkit import hookimpl
from mtlkit.masking import MaskContext


class GlobalMagnitude(PerNeuronMask):
    """Global top-k of |w| over the encoder, PSN's budget (the paper's Global ablation)."""

    def select_weights(self, weights: dict[str, torch.Tensor], modules: dict[str, Any],
                       k: int, context: MaskContext) -> dict[str, torch.Tensor]:
        if not weights:
            return {}
        budget = sum(min(k, s[1]) * s[0] for s in
                     (neuron_rows(p, modules.get(n)).shape for n, p in weights.items()))
        flat = torch.cat([p.detach().abs().reshape(-1).float().cpu() for p in weights.values()])
        keep = torch.zeros(flat.numel(), dtype=torch.bool)
        keep[torch.topk(flat, min(budget, flat.numel()), sorted=False).indices] = True
        out, offset = {}, 0
        for name, p in weights.items():
            out[name] = keep[offset:offset + p.numel()].reshape(p.shape).to(p.device)
            offset += p.numel()
        return out


@hookimpl
def register_mask_strategies(register):
    register("global", GlobalMagnitude)
