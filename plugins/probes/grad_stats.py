"""Per-task gradient norms, gradient-magnitude similarity and the condition number of J.

All three are computed from the ``K x K`` Gramian ``G = J J^T`` (shared with other probes, so
the cost is independent of n once the Gramian exists), on the trainable coordinates the
aggregator sees (``G``) and, when the mask is sparse, on the full shared gradient.

* norms: ``||g_k|| = sqrt(G_kk)``;
* gradient-magnitude similarity (Yu et al., PCGrad, NeurIPS 2020, Def. 2), per pair
  ``GMS(g_i, g_j) = 2 ||g_i|| ||g_j|| / (||g_i||^2 + ||g_j||^2)`` (1 = equal magnitudes, -> 0
  as one dominates); reported as the mean over pairs;
* condition number of J (Aligned-MTL, Senushkin et al., CVPR 2023): ``sigma_max / sigma_min``
  over the K singular values, from the eigenvalues of G (``sigma_k = sqrt(lambda_k)``);
  infinite (``inf`` in ``steps.csv``, left out of the summary mean and counted in
  ``rank_deficient_steps``) when J is rank-deficient.

Records go to ``steps.csv`` as ``grad_stats.<...>``; the summary holds the means over observed
steps (finite values only for the condition number).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from mtlkit import hookimpl
from mtlkit.probing import ConflictProbe, GradientObservation, check_every


def gradient_stats(G: torch.Tensor) -> dict[str, float | list[float]]:
    """Norms, mean pairwise gradient-magnitude similarity and condition number from a Gramian."""
    G = G.double()
    K = G.shape[0]
    sq = torch.clamp(torch.diagonal(G), min=0)
    norms = torch.sqrt(sq)
    if K > 1:
        iu = torch.triu_indices(K, K, offset=1)
        num = 2 * norms[iu[0]] * norms[iu[1]]
        den = sq[iu[0]] + sq[iu[1]]
        gms = torch.where(den > 0, num / den.clamp_min(1e-300), torch.ones_like(den))
        gms_mean = float(gms.mean())
    else:
        gms_mean = 1.0
    eig = torch.linalg.eigvalsh((G + G.T) / 2).clamp_min(0)
    s_max, s_min = float(eig.max().sqrt()), float(eig.min().sqrt())
    # eigenvalues below the float round-off of G count as zero: J is then rank-deficient
    tol = float(eig.max()) * K * 1e-12
    cond = s_max / s_min if s_min > 0 and float(eig.min()) > tol else math.inf
    return {"norms": norms.tolist(), "gms": gms_mean, "condition_number": cond}


class GradStatsProbe(ConflictProbe):
    """Per-task gradient norms, gradient-magnitude similarity, condition number of J."""

    def __init__(self, every: int = 1) -> None:
        check_every(every)
        self.every = every
        self.reset()

    def reset(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self._task_names: list[str] = []

    def observe(self, obs: GradientObservation) -> dict[str, float]:
        self._task_names = list(obs.task_names)
        stats = {"trainable": gradient_stats(obs.gramian)}
        dense = obs.layout.n == obs.layout.n_full
        stats["full"] = stats["trainable"] if dense else gradient_stats(obs.full_gramian)
        self.rows.append(stats)
        record: dict[str, float] = {}
        for where, s in stats.items():
            suffix = "" if where == "full" else "_trainable"
            for task, norm in zip(obs.task_names, s["norms"]):
                record[f"norm{suffix}.{task}"] = norm
            record[f"gms{suffix}"] = s["gms"]
            record[f"condition_number{suffix}"] = s["condition_number"]
        return record

    def summary(self) -> dict[str, Any]:
        if not self.rows:
            return {}
        out: dict[str, Any] = {"observed_steps": len(self.rows), "task_names": self._task_names}
        for where in ("full", "trainable"):
            suffix = "" if where == "full" else "_trainable"
            rows = [r[where] for r in self.rows]
            K = len(rows[0]["norms"])
            out[f"mean_norm{suffix}"] = {
                t: sum(r["norms"][k] for r in rows) / len(rows)
                for k, t in enumerate(self._task_names[:K])}
            out[f"mean_gms{suffix}"] = sum(r["gms"] for r in rows) / len(rows)
            finite = [r["condition_number"] for r in rows if math.isfinite(r["condition_number"])]
            out[f"mean_condition_number{suffix}"] = sum(finite) / len(finite) if finite else None
            out[f"rank_deficient_steps{suffix}"] = len(rows) - len(finite)
        return out


@hookimpl
def register_conflict_probes(register):
    register("grad_stats", GradStatsProbe)
