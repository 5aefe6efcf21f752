"""Per-layer task-gradient cosines and Recon's S-conflict counts.

Recon (Shi et al., ICLR 2023, "Recon: Reducing Conflicting Gradients from the Root for
Multi-Task Learning", arXiv 2302.11289, §4.1 and Alg. 1) splits the shared parameters into
layers :math:`\\theta^{(k)}` and compares the task gradients :math:`g_i^{(k)}` layer by layer:

.. math::

    \\cos\\phi_{ij}^{(k)} = \\frac{\\langle g_i^{(k)}, g_j^{(k)} \\rangle}
                                 {\\lVert g_i^{(k)} \\rVert \\, \\lVert g_j^{(k)} \\rVert},
    \\qquad
    s^{(k)} = \\sum_{\\text{steps}} \\#\\{(i, j),\\ i < j : \\cos\\phi_{ij}^{(k)} < S\\}.

``s^(k)`` is the *S-conflict score* of layer k: how often, summed over task pairs and observed
steps, the two tasks' gradients on that layer have a cosine below the threshold ``S``. The paper
takes ``-1 < S <= 0``; any ``S`` in [-1, 1] is accepted here (``S = 0`` counts plain conflicts).

A *layer* is what Recon's reference code (``models/recon_model.py::_get_layers``) calls one: one
module, weight and bias concatenated, so every Conv, Linear and BatchNorm is its own layer. That
is :meth:`mtlkit.probing.ParamLayout.layers`. The cosines use the *full* gradient of the layer
(frozen coordinates of a sparse-training mask included), because Recon scores the architecture,
not the trainable subset. A pair in which either gradient is exactly zero (a task that does not
reach the layer) is never counted as a conflict, whatever ``S``.

Per observed step the probe writes three compact columns to ``steps.csv``
(``layers_in_conflict``: layers with at least one pair below ``S``; ``s_conflicts``: the pair
count summed over layers; ``min_layer_cosine``) instead of one column per layer and pair.
:meth:`LayerConflictProbe.summary` holds the per-layer totals, in model order::

    {"layers": [...], "s_conflict_counts": {layer: int}, "mean_cosine": {layer: float},
     "threshold": S, "observed_steps": int, "pairs_per_step": C(K, 2)}

``mean_cosine`` is the mean over pairs and observed steps. With ``subset`` (a list of layer
names), each step also computes the cosines of the concatenated gradient of those layers and
the summary adds ``subset`` with its conflict incidence (cos < 0, over all steps and over the
last half) and its S-conflict rate: ``mtlkit recon`` uses this to compare the layers that stay
shared before and after branching.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from mtlkit import hookimpl
from mtlkit.errors import ConfigError
from mtlkit.probing import ConflictProbe, GradientObservation, check_every


def _check_threshold(value: object) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value) and -1.0 <= value <= 1.0
    if not ok:
        raise ValueError(f"invalid threshold={value!r}: must be a number in [-1, 1] "
                         "(Recon's S; the paper uses -0.1 to 0)")
    return float(value)


def pair_cosines(G: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosines of the pairs ``i < j`` from a ``[K, K]`` Gramian, and which pairs are defined.

    A pair is undefined (cosine reported as 0) when either gradient has zero norm.
    """
    K = G.shape[0]
    iu = torch.triu_indices(K, K, offset=1, device=G.device)
    norms = torch.sqrt(torch.clamp(torch.diagonal(G), min=0))
    denom = norms[iu[0]] * norms[iu[1]]
    defined = denom > 0
    cos = torch.where(defined, G[iu[0], iu[1]] / denom.clamp_min(1e-300), torch.zeros_like(denom))
    return cos, defined


class LayerConflictProbe(ConflictProbe):
    """Per-layer pairwise cosines and S-conflict counts (Recon's layer-wise conflict score)."""

    def __init__(self, threshold: float = 0.0, every: int = 1,
                 subset: list[str] | None = None) -> None:
        check_every(every)
        if subset is not None and (not isinstance(subset, (list, tuple))
                                   or not all(isinstance(s, str) for s in subset)):
            raise ValueError(f"invalid subset={subset!r}: must be a list of layer names")
        self.threshold = _check_threshold(threshold)
        self.every = every
        self.subset = None if subset is None else list(subset)
        self.reset()

    def reset(self) -> None:
        self.layers: list[str] = []
        self.counts: dict[str, int] = {}
        self.cos_sums: dict[str, float] = {}
        self.observed_steps = 0
        self.pairs = 0
        # (progress, subset incidence cos<0, subset pairs below S) per observed step
        self.subset_records: list[tuple[float, float, float]] = []

    def observe(self, obs: GradientObservation) -> dict[str, float]:
        grams = obs.layer_gramians
        if not self.layers:
            self.layers = list(grams)
            self.counts = dict.fromkeys(self.layers, 0)
            self.cos_sums = dict.fromkeys(self.layers, 0.0)
            if self.subset is not None:
                unknown = sorted(set(self.subset) - set(self.layers))
                if unknown:
                    raise ConfigError(f"invalid subset layer {unknown[0]!r}: the shared layers "
                                     f"are {', '.join(self.layers)}")
        K = len(obs.task_names)
        self.pairs = K * (K - 1) // 2
        in_conflict = total = 0
        min_cos = 1.0
        for layer, G in grams.items():
            if layer not in self.counts:  # a layer that appeared later (should not happen)
                self.layers.append(layer)
                self.counts[layer] = 0
                self.cos_sums[layer] = 0.0
            cos, defined = pair_cosines(G.double())
            below = int(((cos < self.threshold) & defined).sum())
            self.counts[layer] += below
            self.cos_sums[layer] += float(cos.sum())
            total += below
            in_conflict += below > 0
            if cos.numel():
                min_cos = min(min_cos, float(cos.min()))
        self.observed_steps += 1
        record = {"layers_in_conflict": in_conflict, "s_conflicts": total,
                  "min_layer_cosine": min_cos}
        if self.subset is not None:
            G = torch.stack([grams[name] for name in self.subset]).sum(0) if self.subset \
                else torch.zeros(K, K, dtype=obs.J.dtype)
            cos, defined = pair_cosines(G.double())
            n = max(cos.numel(), 1)
            p = float(((cos < 0) & defined).sum()) / n
            s = float(((cos < self.threshold) & defined).sum()) / n
            self.subset_records.append((obs.progress, p, s))
            record["subset_incidence"] = p
        return record

    def summary(self) -> dict[str, Any]:
        steps = self.observed_steps
        denom = max(steps * self.pairs, 1)
        out: dict[str, Any] = {
            "layers": list(self.layers),
            "s_conflict_counts": {name: int(self.counts[name]) for name in self.layers},
            "mean_cosine": {name: self.cos_sums[name] / denom for name in self.layers},
            "threshold": self.threshold,
            "observed_steps": steps,
            "pairs_per_step": self.pairs,
        }
        if self.subset is not None and self.subset_records:
            recs = self.subset_records
            late = [r for r in recs if r[0] >= 0.5] or recs[-1:]
            n_pairs = max(steps * self.pairs * len(self.subset), 1)
            out["subset"] = {
                "layers": list(self.subset),
                "incidence_all": sum(r[1] for r in recs) / len(recs),
                "incidence_last_half": sum(r[1] for r in late) / len(late),
                "s_incidence_all": sum(r[2] for r in recs) / len(recs),
                # per-layer S-conflicts of the subset layers / (steps x pairs x layers)
                "layer_s_conflict_rate": sum(self.counts[n] for n in self.subset) / n_pairs,
            }
        return out


@hookimpl
def register_conflict_probes(register):
    register("layer_conflict", LayerConflictProbe)
