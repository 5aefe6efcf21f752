"""Per-task gradients on the shared *trainable* coordinates, as a ``[K, n]`` matrix.

Modes (``TrainConfig.jacobian``):

``loop`` (default)
    one ``torch.autograd.grad`` call per task over the shared parameters plus that task's own
    parameters. Measured fastest on CPU for conv + BatchNorm encoders.
``batched``
    one call with ``is_grads_batched=True`` (vmapped VJPs); faster for linear encoders.

The output buffer is allocated once and reused every step (fresh full-size buffers per step cost
page faults). Frozen coordinates are dropped while copying (``index_select`` into the buffer), so
with a mask of density ``rho`` the matrix has ``rho * n`` columns; parameters with no trainable
coordinate are not differentiated at all unless a probe asks for the full gradient. Everything
stays on the model's device: no host round-trip.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import torch
from torch import nn

from mtlkit.masking import ParameterMask
from mtlkit.probing import ParamLayout

MODES = ("loop", "batched")


@attrs.define(eq=False)
class JacobianResult:
    J: torch.Tensor
    #: ``full_grads[k][i]``: task k's gradient on shared parameter i (only when asked for)
    full_grads: list[list[torch.Tensor | None]] | None


class JacobianEngine:
    """Computes per-task shared gradients and hands task-specific gradients to their params."""

    def __init__(
        self,
        shared: Sequence[tuple[str, nn.Parameter]],
        mask: ParameterMask | None = None,
        mode: str = "loop",
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"jacobian mode {mode!r} is not one of {', '.join(MODES)}")
        self.mode = mode
        self.names = [n for n, _ in shared]
        self.params = [p for _, p in shared]
        self.set_mask(mask)
        self._buffer: torch.Tensor | None = None

    def set_mask(self, mask: ParameterMask | None) -> None:
        """(Re)build the column layout; called again when a strategy re-selects."""
        self.index: list[torch.Tensor | None] = []
        sizes, offsets, full_sizes, full_offsets = [], [], [], []
        pos = full_pos = 0
        for name, p in zip(self.names, self.params):
            m = None if mask is None else mask.masks[name]
            if m is None or bool(m.all()):
                idx, size = None, p.numel()
            else:
                idx = torch.nonzero(m.reshape(-1)).flatten().to(p.device)
                size = idx.numel()
            self.index.append(idx)
            sizes.append(size)
            offsets.append(pos)
            full_sizes.append(p.numel())
            full_offsets.append(full_pos)
            pos += size
            full_pos += p.numel()
        self.layout = ParamLayout(self.names, [tuple(p.shape) for p in self.params],
                                  full_offsets, full_sizes, offsets, sizes)
        self._active = [i for i, s in enumerate(sizes) if s > 0]
        self._buffer = None

    @property
    def n(self) -> int:
        return self.layout.n

    def _out(self, K: int, like: torch.Tensor) -> torch.Tensor:
        buf = self._buffer
        if buf is None or buf.shape[0] != K or buf.dtype != like.dtype or buf.device != like.device:
            buf = torch.empty(K, self.n, dtype=like.dtype, device=like.device)
            self._buffer = buf
        return buf

    def compute(
        self,
        losses: torch.Tensor,
        task_params: Sequence[Sequence[nn.Parameter]],
        *,
        full: bool = False,
        retain_graph: bool = False,
    ) -> JacobianResult:
        """Fill the ``[K, n]`` Jacobian; write each task's own-parameter gradient to ``.grad``.

        :param losses: ``[K]`` task losses sharing one graph.
        :param task_params: ``task_params[k]`` are the parameters only task ``k`` uses.
        :param full: also return every shared parameter's full gradient (for probes).
        :param retain_graph: keep the graph after the last task (for a later backward).
        """
        K = losses.shape[0]
        shared_idx = list(range(len(self.params))) if full else self._active
        shared = [self.params[i] for i in shared_idx]
        J = self._out(K, self.params[0] if self.params else losses)
        full_grads: list[list[torch.Tensor | None]] | None = [] if full else None
        if self.mode == "batched":
            per_task = self._batched(losses, shared, task_params, retain_graph)
        else:
            per_task = self._loop(losses, shared, task_params, retain_graph)
        for k, (shared_grads, own_grads) in enumerate(per_task):
            by_param: list[torch.Tensor | None] = [None] * len(self.params)
            for i, g in zip(shared_idx, shared_grads):
                by_param[i] = g
            row = J[k]
            for i in self._active:
                g = by_param[i]
                dst = row.narrow(0, self.layout.offsets[i], self.layout.sizes[i])
                if g is None:
                    dst.zero_()
                elif self.index[i] is None:
                    dst.copy_(g.reshape(-1))
                else:
                    torch.index_select(g.reshape(-1), 0, self.index[i], out=dst)
            for p, g in zip(task_params[k], own_grads):
                _accumulate(p, g)
            if full_grads is not None:
                full_grads.append(by_param)
        return JacobianResult(J, full_grads)

    def _loop(self, losses, shared, task_params, retain_graph):
        K = losses.shape[0]
        for k in range(K):
            inputs = [*shared, *task_params[k]]
            keep = retain_graph or k < K - 1
            grads = torch.autograd.grad(losses[k], inputs, retain_graph=keep, allow_unused=True)
            yield grads[: len(shared)], grads[len(shared):]

    def _batched(self, losses, shared, task_params, retain_graph):
        K = losses.shape[0]
        own = [p for ps in task_params for p in ps]
        eye = torch.eye(K, dtype=losses.dtype, device=losses.device)
        grads = torch.autograd.grad(losses, [*shared, *own], grad_outputs=eye,
                                    retain_graph=retain_graph, allow_unused=True,
                                    is_grads_batched=True)
        shared_grads, own_grads = grads[: len(shared)], grads[len(shared):]
        start = 0
        for k in range(K):
            n_own = len(task_params[k])
            mine = own_grads[start:start + n_own]
            start += n_own
            yield ([None if g is None else g[k] for g in shared_grads],
                   [None if g is None else g[k] for g in mine])

    def scatter(self, d: torch.Tensor) -> None:
        """Write the aggregated ``[n]`` update into the shared parameters' ``.grad``.

        Frozen coordinates get exactly 0; parameters with no trainable coordinate get ``None``.
        """
        for i, p in enumerate(self.params):
            size = self.layout.sizes[i]
            if size == 0:
                p.grad = None
                continue
            src = d.narrow(0, self.layout.offsets[i], size)
            if self.index[i] is None:
                p.grad = src.reshape(p.shape).clone()
            else:
                grad = torch.zeros(p.numel(), dtype=d.dtype, device=d.device)
                grad.index_copy_(0, self.index[i], src)
                p.grad = grad.reshape(p.shape)


def _accumulate(p: nn.Parameter, g: torch.Tensor | None) -> None:
    if g is None:
        return
    if p.grad is None:
        p.grad = g.detach().clone() if g.requires_grad else g
    else:
        p.grad.add_(g)
