"""Exact aggregation across data-parallel workers (``MTLBackward(process_group=...)``).

Why not DDP: DDP averages gradients inside ``loss.backward()`` through reducer hooks, which do
not fire for ``torch.autograd.grad`` (every Jacobian method uses it), and averaging each
worker's *aggregated* update is wrong for every non-linear method: the aggregation of an
average is not the average of aggregations. The engine instead averages what the aggregator
reads, so that every worker aggregates the global batch's quantities and applies the same
update a single process would compute on the global batch:

* the task losses (``K`` values: loss-level weightings and the non-finite check see the same
  numbers on every worker);
* the ``[K, n]`` Jacobian on the trainable coordinates (``K n`` values per worker per step),
  and the task-specific parameters' gradients;
* for probes, on the steps they are due, the full shared gradients.

Each worker's losses must be means over equally sized shards (the global mean is then the
mean of the shard means). Randomised aggregators draw from the engine's generator, seeded
identically on every worker, and stateful ones update from identical inputs, so their state
stays identical. BatchNorm statistics stay per worker (use ``SyncBatchNorm`` where that
matters). Communication: ``K n`` + (heads) values per step, against DDP's ``n``; the
reduce-scatter/Gramian scheme (``(K + 1) n``-free) is future work, see ``docs/own-model.md``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.distributed as dist


class Reducer:
    """Averages tensors over a process group in place (a no-op without one)."""

    def __init__(self, group: Any) -> None:
        self.group = group
        self.active = group is not None
        if self.active and not dist.is_initialized():
            raise RuntimeError("process_group given but torch.distributed is not initialised "
                               "(call torch.distributed.init_process_group first)")
        self.world = dist.get_world_size(group) if self.active else 1

    def mean_(self, t: torch.Tensor) -> torch.Tensor:
        if self.active and self.world > 1:
            dist.all_reduce(t, op=dist.ReduceOp.SUM, group=self.group)
            t.div_(self.world)
        return t

    def mean_grads_(self, params: Iterable[torch.Tensor]) -> None:
        """Average ``.grad`` of ``params`` (a missing gradient counts as zero everywhere)."""
        if not (self.active and self.world > 1):
            return
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            elif not p.grad.is_contiguous():
                p.grad = p.grad.contiguous()
            self.mean_(p.grad)

    def mean_nested_(self, grads: list[list[torch.Tensor | None]]) -> None:
        """Average per-task full gradients for probes (``None`` stays ``None``: unused by the
        task on every worker, since all workers run the same model)."""
        if not (self.active and self.world > 1):
            return
        for row in grads:
            for i, g in enumerate(row):
                if g is not None:
                    row[i] = self.mean_(g.detach().clone())
