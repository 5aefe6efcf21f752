"""Pairwise cosines and conflict incidence (the sparse-training paper's p%).

At each observed step, with ``C = cos(g_i, g_j)`` over task pairs ``i < j``:

.. math:: p_{step} = \\frac{\\#\\{(i, j) : \\cos(g_i, g_j) < 0\\}}{\\binom{K}{2}}

computed on the flattened *full* shared gradient (the paper's definition, ST §4.1) and on the
*trainable* coordinates the aggregator sees (what sparse training changes; identical when the
mask is dense). The summary reports the mean over all observed steps and over the last 50% of
training (steps with progress >= 0.5, i.e. the last half of the run's steps: for an even number
of epochs exactly the last half of the epochs), as fractions in [0, 1]. A pair whose gradient
has zero norm counts as not conflicting.
"""

from __future__ import annotations

from typing import Any

import torch

from mtlkit import hookimpl
from mtlkit.probing import ConflictProbe, GradientObservation, check_every, cosine_matrix


def incidence(cos: torch.Tensor, iu: torch.Tensor | None = None) -> float:
    """Share of pairs ``i < j`` with a negative cosine (``iu``: the pairs' indices, if known)."""
    K = cos.shape[0]
    if K < 2:
        return 0.0
    if iu is None:
        iu = torch.triu_indices(K, K, offset=1)
    return float((cos[iu[0], iu[1]] < 0).double().mean())


class CosineProbe(ConflictProbe):
    """Pairwise cosine matrix and conflict incidence, on full and trainable gradients."""

    def __init__(self, every: int = 1) -> None:
        check_every(every)
        self.every = every
        self.reset()

    def reset(self) -> None:
        self.records: list[tuple[float, float, float]] = []  # (progress, p_full, p_trainable)
        self._cos_sum: torch.Tensor | None = None
        self._task_names: list[str] = []

    def observe(self, obs: GradientObservation) -> dict[str, float]:
        cos_train = cosine_matrix(obs.gramian.double())
        dense = obs.layout.n == obs.layout.n_full
        cos_full = cos_train if dense else cosine_matrix(obs.full_gramian.double())
        K = cos_full.shape[0]
        iu = torch.triu_indices(K, K, offset=1)
        p_full, p_train = incidence(cos_full, iu), incidence(cos_train, iu)
        self.records.append((obs.progress, p_full, p_train))
        self._cos_sum = cos_full.cpu() if self._cos_sum is None else self._cos_sum + cos_full.cpu()
        self._task_names = list(obs.task_names)
        mean_cos = float(cos_full[iu[0], iu[1]].mean()) if K > 1 else 1.0
        return {"incidence": p_full, "incidence_trainable": p_train, "mean_cosine": mean_cos}

    def summary(self) -> dict[str, Any]:
        if not self.records:
            return {}
        late = [r for r in self.records if r[0] >= 0.5] or self.records[-1:]

        def mean(rows, i):
            return sum(r[i] for r in rows) / len(rows)

        cos_mean = self._cos_sum / len(self.records)
        return {
            "incidence_all": mean(self.records, 1),
            "incidence_last_half": mean(late, 1),
            "incidence_trainable_all": mean(self.records, 2),
            "incidence_trainable_last_half": mean(late, 2),
            "observed_steps": len(self.records),
            "task_names": self._task_names,
            "mean_pairwise_cosine": cos_mean.tolist(),
        }


@hookimpl
def register_conflict_probes(register):
    register("cosine", CosineProbe)
