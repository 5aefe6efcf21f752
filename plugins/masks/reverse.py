"""Reverse PSN: per neuron, the K *lowest*-magnitude incoming weights (ST Tab. 5 ablation).

The sparse-training paper's "Reverse" arm (arXiv 2411.18615, §4.4, Table 5): the same number
of trainable weights per neuron as PSN, chosen by ``bottomk(|W[r, :]|)``. It tests whether
magnitude matters (the paper finds PSN > Reverse). Parameters as :mod:`psn`.
"""

from __future__ import annotations

from mtlkit_plugins.masks.psn import PSN

from mtlkit import hookimpl


class Reverse(PSN):
    """Per neuron, the K lowest-|w| incoming weights (the paper's Reverse ablation)."""

    largest = False


@hookimpl
def register_mask_strategies(register):
    register("reverse", Reverse)
