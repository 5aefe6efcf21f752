"""Δm%: the multi-task performance change against single-task (STL) baselines.

Two conventions are used by the papers, and results name which one a number follows:

``metric_level`` (CAGrad, Nash-MTL, and the sparse-training paper's reported numbers)
    Δm% = (1/M) Σ_m (-1)^{h_m} (X_m - B_m) / B_m × 100 over all M metrics of all tasks, with
    h_m = 1 when higher is better. **Lower is better**; 0 means "as good as STL".
``task_level`` (Recon)
    Δm_t = (1/M_t) Σ_{m in t} (-1)^{l_m} (X_m - B_m) / B_m, l_m = 1 when lower is better;
    Δm% = (1/T) Σ_t Δm_t × 100. **Higher is better.**
"""

from __future__ import annotations

from collections.abc import Mapping

Metrics = Mapping[str, Mapping[str, float]]
Directions = Mapping[str, Mapping[str, bool]]



def _pairs(results: Metrics, baselines: Metrics, higher_is_better: Directions):
    for task, base in baselines.items():
        if task not in results:
            raise KeyError(f"no result for task {task!r} (baseline has it)")
        for metric, b in base.items():
            if metric not in results[task]:
                raise KeyError(f"no result for metric {task}.{metric} (baseline has it)")
            if b == 0:
                raise ValueError(f"baseline {task}.{metric} is 0: relative change undefined")
            yield task, float(results[task][metric]), float(b), bool(
                higher_is_better[task][metric])


def delta_m_metric_level(results: Metrics, baselines: Metrics, higher_is_better: Directions
                         ) -> float:
    """Metric-level mean of signed relative change, in percent (lower is better)."""
    terms = [(-1.0 if hib else 1.0) * (x - b) / b
             for _, x, b, hib in _pairs(results, baselines, higher_is_better)]
    if not terms:
        raise ValueError("no baseline metrics to compare against")
    return 100.0 * sum(terms) / len(terms)


def delta_m_task_level(results: Metrics, baselines: Metrics, higher_is_better: Directions
                       ) -> float:
    """Recon's task-level mean, improvement sign, in percent (higher is better)."""
    per_task: dict[str, list[float]] = {}
    for task, x, b, hib in _pairs(results, baselines, higher_is_better):
        per_task.setdefault(task, []).append((1.0 if hib else -1.0) * (x - b) / b)
    if not per_task:
        raise ValueError("no baseline metrics to compare against")
    return 100.0 * sum(sum(v) / len(v) for v in per_task.values()) / len(per_task)
