"""Per-task gradients on the shared *trainable* coordinates, and the update written into ``.grad``.

Modes (``TrainConfig.jacobian``, see ``docs/jacobian-engine.md``):

``loop`` (default)
    one ``torch.autograd.grad`` call per task over the shared parameters plus that task's own
    parameters; each result is copied into row ``k`` of a reused ``[K, n]`` buffer right away
    (while it is still in cache) and then freed. Measured fastest on CPU for conv + BatchNorm.
``batched``
    one call with ``is_grads_batched=True`` (vmapped VJPs); faster for linear encoders.
``gramian``
    for :class:`~mtlkit.aggregation.GramianWeighting` aggregators: the ``[K, n]`` matrix is never
    formed. ``G = sum_p J_p J_p^T`` is accumulated over cache-sized ``[K, 64k]`` pieces of the
    parameter blocks, and ``d = w^T J`` is formed per parameter straight into its ``.grad``.
    Extra memory: ``O(K^2 + K * 64k)`` on top of autograd's own per-task gradients.
``representation``
    gradients with respect to the shared representation ``z`` (``[K, B * r]``, MGDA-UB style);
    the aggregator runs on those rows and one backward of ``z`` with the aggregated ``dz`` fills
    the shared ``.grad`` (frozen coordinates zeroed). See :meth:`JacobianEngine.representation`.

Frozen coordinates are dropped while copying (``index_select`` into the buffer), so with a mask
of density ``rho`` the matrix has ``rho * n`` columns; parameters with no trainable coordinate are
not differentiated at all unless a probe asks for the full gradient. Everything stays on the
model's device: no host round-trip, no per-parameter synchronisation.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import attrs
import torch
from torch import nn

from mtlkit.aggregation import gramian_matrix, nonfinite_error
from mtlkit.masking import ParameterMask
from mtlkit.probing import ParamLayout

MODES = ("loop", "batched", "gramian", "representation")
#: columns per piece in the gramian path: K x 64k float32 (2.5 MB at K = 10) stays in cache
CHUNK = 1 << 16

#: ``[K]`` losses: a tensor, or the K scalar losses (each differentiated through its own graph)
LossVector = "torch.Tensor | Sequence[torch.Tensor]"
#: ``grads[k][i]``: task k's gradient on shared parameter i (``None``: not computed or unused)
TaskGrads = list[list["torch.Tensor | None"]]


@attrs.define(eq=False)
class JacobianResult:
    #: ``[K, n]`` on the trainable coordinates; ``None`` in gramian mode unless probes asked
    J: torch.Tensor | None
    #: ``full_grads[k][i]``: task k's gradient on shared parameter i (only when asked for)
    full_grads: TaskGrads | None
    #: ``J J^T`` when the engine computed it (gramian mode)
    gramian: torch.Tensor | None = None


@attrs.define(eq=False)
class KeptGradients:
    """Per-task shared gradients kept between the Gramian and the weighted combination."""

    per_task: TaskGrads
    #: ``stacked[i]``: ``[K, *shape]`` gradients of parameter i (batched producer), or ``None``
    stacked: list[torch.Tensor | None] | None = None


def check_gramian(G: torch.Tensor, task_names: Sequence[str] | None = None) -> bool:
    """Raise :class:`GradientError` naming the tasks whose gradient is not finite.

    ``J`` is finite exactly when ``diag(J J^T)`` is (NaN and Inf propagate into the squared
    norm; a finite row whose squared norm overflows is just as unusable), so this O(K) check
    replaces a full pass over ``J``. Returns whether every row is zero (zero update).
    """
    diag = torch.diagonal(G)
    finite, zero = torch.stack([torch.isfinite(diag).all(), (diag == 0).all()]).tolist()
    if not finite:
        rows = torch.nonzero(~torch.isfinite(diag)).flatten().tolist()
        raise nonfinite_error(rows, task_names)
    return bool(zero)


def all_finite(t: torch.Tensor) -> bool:
    """Whether every entry is finite, with one cheap reduction in the common case.

    A sum is finite only if every term is; a non-finite sum may be an overflow of finite terms,
    so only then is the exact (allocating) element-wise check run.
    """
    if bool(torch.isfinite(t.sum())):
        return True
    return bool(torch.isfinite(t).all())


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

    def set_mask(self, mask: ParameterMask | None) -> None:
        """(Re)build the column layout; called again when a strategy re-selects."""
        self.index: list[torch.Tensor | None] = []
        #: ``~mask`` for partly frozen parameters (zeroed in full-size gradients)
        self.frozen: list[torch.Tensor | None] = []
        sizes, offsets, full_sizes, full_offsets = [], [], [], []
        pos = full_pos = 0
        for name, p in zip(self.names, self.params):
            m = None if mask is None else mask.masks[name]
            if m is None or bool(m.all()):
                idx, frozen, size = None, None, p.numel()
            else:
                m = m.to(p.device)
                idx = torch.nonzero(m.reshape(-1)).flatten()
                frozen, size = ~m, idx.numel()
            self.index.append(idx)
            self.frozen.append(frozen)
            sizes.append(size)
            offsets.append(pos)
            full_sizes.append(p.numel())
            full_offsets.append(full_pos)
            pos += size
            full_pos += p.numel()
        self.layout = ParamLayout(self.names, [tuple(p.shape) for p in self.params],
                                  full_offsets, full_sizes, offsets, sizes)
        self._active = [i for i, s in enumerate(sizes) if s > 0]
        # Once per layout, not per _scratch_for call (that runs once per parameter per step).
        self._scratch_width = min(CHUNK, max((full_sizes[i] for i in self._active), default=1))
        self._buffer: torch.Tensor | None = None
        self._scratch: torch.Tensor | None = None
        self._grad_bufs: dict[int, torch.Tensor] = {}
        self._d_buffer: torch.Tensor | None = None

    @property
    def n(self) -> int:
        return self.layout.n

    # -- buffers (allocated once: fresh full-size buffers every step cost page faults) --------

    def _out(self, K: int, like: torch.Tensor) -> torch.Tensor:
        buf = self._buffer
        if buf is None or buf.shape[0] != K or buf.dtype != like.dtype or buf.device != like.device:
            buf = torch.empty(K, self.n, dtype=like.dtype, device=like.device)
            self._buffer = buf
        return buf

    def _scratch_for(self, K: int, like: torch.Tensor) -> torch.Tensor:
        width = self._scratch_width
        buf = self._scratch
        if buf is None or buf.shape != (K, width) or buf.dtype != like.dtype \
                or buf.device != like.device:
            buf = torch.empty(K, width, dtype=like.dtype, device=like.device)
            self._scratch = buf
        return buf

    def _grad_buf(self, i: int) -> torch.Tensor:
        p = self.params[i]
        buf = self._grad_bufs.get(i)
        if buf is None or buf.dtype != p.dtype or buf.device != p.device:
            buf = torch.empty_like(p, memory_format=torch.contiguous_format)
            self._grad_bufs[i] = buf
        return buf

    # -- per-task gradients -------------------------------------------------------------------

    def _shared_indices(self, full: bool) -> list[int]:
        return list(range(len(self.params))) if full else self._active

    def _per_task(self, losses: LossVector, shared_idx: list[int],
                  task_params: Sequence[Sequence[nn.Parameter]], retain_graph: bool,
                  mode: str) -> Iterator[tuple[list[torch.Tensor | None], tuple]]:
        """Yield ``(by_param, own_grads)`` per task; ``by_param[i]`` for shared parameter i."""
        shared = [self.params[i] for i in shared_idx]
        per_task = (self._batched(losses, shared, task_params, retain_graph) if mode == "batched"
                    else self._loop(losses, shared, task_params, retain_graph))
        for shared_grads, own_grads in per_task:
            by_param: list[torch.Tensor | None] = [None] * len(self.params)
            for i, g in zip(shared_idx, shared_grads):
                by_param[i] = g
            yield by_param, own_grads

    def compute(
        self,
        losses: LossVector,
        task_params: Sequence[Sequence[nn.Parameter]],
        *,
        full: bool = False,
        retain_graph: bool = False,
    ) -> JacobianResult:
        """Fill the ``[K, n]`` Jacobian; write each task's own-parameter gradient to ``.grad``.

        :param losses: ``[K]`` task losses sharing one graph: a tensor, or (better for the loop
            producer) the K scalar losses themselves, so that task k is differentiated through
            its own head only, not through a stack of all K.
        :param task_params: ``task_params[k]`` are the parameters only task ``k`` uses
            (an empty sequence: no task-specific gradients are wanted).
        :param full: also return every shared parameter's full gradient (for probes).
        :param retain_graph: keep the graph after the last task (for a later backward).
        """
        K = len(losses)
        task_params = task_params or [()] * K
        J = self._out(K, self.params[0] if self.params else losses)
        full_grads: TaskGrads | None = [] if full else None
        mode = "batched" if self.mode == "batched" else "loop"
        for k, (by_param, own_grads) in enumerate(
                self._per_task(losses, self._shared_indices(full), task_params, retain_graph,
                               mode)):
            self._fill_row(J[k], by_param)
            for p, g in zip(task_params[k], own_grads):
                _accumulate(p, g)
            if full_grads is not None:
                full_grads.append(by_param)
        return JacobianResult(J, full_grads)

    def _fill_row(self, row: torch.Tensor, by_param: list[torch.Tensor | None]) -> None:
        for i in self._active:
            g = by_param[i]
            dst = row.narrow(0, self.layout.offsets[i], self.layout.sizes[i])
            if g is None:
                dst.zero_()
            elif self.index[i] is None:
                dst.copy_(g.reshape(-1))
            else:
                torch.index_select(g.reshape(-1), 0, self.index[i], out=dst)

    def assemble(self, grads: TaskGrads) -> torch.Tensor:
        """The ``[K, n]`` matrix from kept per-task gradients (gramian mode, for probes)."""
        J = self._out(len(grads), self.params[0])
        for k, by_param in enumerate(grads):
            self._fill_row(J[k], by_param)
        return J

    def gramian(
        self,
        losses: LossVector,
        task_params: Sequence[Sequence[nn.Parameter]],
        *,
        full: bool = False,
        retain_graph: bool = False,
    ) -> tuple[torch.Tensor, KeptGradients]:
        """``G = J J^T`` on the trainable coordinates without forming ``J``.

        Returns ``G`` and the per-task gradients (autograd's own tensors, kept for
        :meth:`write_combination`). Task-specific parameters get their gradients as in
        :meth:`compute`. With the batched producer autograd already returns each parameter's
        gradients stacked as ``[K, ...]``: those blocks are used in place, with no copy at all.
        """
        K = len(losses)
        task_params = task_params or [()] * K
        like = self.params[self._active[0]]
        G = torch.zeros(K, K, dtype=like.dtype, device=like.device)
        if self.mode == "batched":
            kept = self._stacked(losses, self._shared_indices(full), task_params, retain_graph)
            for i in self._active:
                block = kept.stacked[i]
                if block is None:
                    continue
                block = block.reshape(K, -1)
                if self.index[i] is not None:
                    block = block.index_select(1, self.index[i])
                G.add_(gramian_matrix(block))  # in pieces: one long product can be 2x slower
            return G, kept
        per_task: TaskGrads = []
        for k, (by_param, own_grads) in enumerate(
                self._per_task(losses, self._shared_indices(full), task_params, retain_graph,
                               "loop")):
            for p, g in zip(task_params[k], own_grads):
                _accumulate(p, g)
            per_task.append(by_param)
        S = self._scratch_for(K, like)
        for i in self._active:
            idx = self.index[i]
            for start in range(0, self.layout.sizes[i], CHUNK):
                # a [K, CHUNK] piece stays in cache between the copy and the mm: J is read
                # from memory once
                block = S.narrow(1, 0, min(CHUNK, self.layout.sizes[i] - start))
                cols = None if idx is None else idx.narrow(0, start, block.shape[1])
                for k in range(K):
                    g = per_task[k][i]
                    if g is None:
                        block[k].zero_()
                    elif cols is None:
                        block[k].copy_(g.reshape(-1).narrow(0, start, block.shape[1]))
                    else:
                        torch.index_select(g.reshape(-1), 0, cols, out=block[k])
                G.addmm_(block, block.t())
        return G, KeptGradients(per_task)

    def _stacked(self, losses, shared_idx, task_params, retain_graph) -> KeptGradients:
        K = len(losses)
        losses = _as_tensor(losses)
        shared = [self.params[i] for i in shared_idx]
        own = [p for ps in task_params for p in ps]
        eye = torch.eye(K, dtype=losses.dtype, device=losses.device)
        grads = torch.autograd.grad(losses, [*shared, *own], grad_outputs=eye,
                                    retain_graph=retain_graph, allow_unused=True,
                                    is_grads_batched=True)
        stacked: list[torch.Tensor | None] = [None] * len(self.params)
        for i, g in zip(shared_idx, grads):
            stacked[i] = g
        start = len(shared)
        for k, ps in enumerate(task_params):
            for p, g in zip(ps, grads[start:start + len(ps)]):
                _accumulate(p, None if g is None else g[k])
            start += len(ps)
        per_task = [[None if g is None else g[k] for g in stacked] for k in range(K)]
        return KeptGradients(per_task, stacked)

    def write_combination(self, kept: KeptGradients, w: torch.Tensor) -> None:
        """``.grad = sum_k w_k g_k`` per shared parameter (frozen coordinates exactly 0).

        ``w`` stays on the device (no host sync): stacked blocks take one ``mv`` each, kept
        per-task tensors go through cache-sized pieces (:meth:`_combine_chunked`).
        """
        K = w.shape[0]
        for i, p in enumerate(self.params):
            if self.layout.sizes[i] == 0:
                p.grad = None
                continue
            dst = self._grad_buf(i)
            block = kept.stacked[i] if kept.stacked is not None else None
            if block is not None:
                torch.mv(block.reshape(K, -1).t(), w, out=dst.view(-1))
                started = True
            else:
                started = self._combine_chunked(kept.per_task, i, w, dst.view(-1))
            if not started:
                dst.zero_()
            elif self.frozen[i] is not None:
                dst.masked_fill_(self.frozen[i], 0)
            p.grad = dst

    def _combine_chunked(self, per_task: TaskGrads, i: int, w: torch.Tensor,
                         out: torch.Tensor) -> bool:
        """``out = sum_k w_k g_k[i]`` through cache-sized ``[K, CHUNK]`` pieces (one mv each)."""
        grads = [(k, by_param[i]) for k, by_param in enumerate(per_task)
                 if by_param[i] is not None]
        if not grads:
            return False
        ws = w if len(grads) == len(per_task) else w[[k for k, _ in grads]]
        S = self._scratch_for(len(per_task), out)
        size = out.numel()
        for start in range(0, size, CHUNK):
            width = min(CHUNK, size - start)
            block = S[: len(grads)].narrow(1, 0, width)
            for row, (_, g) in enumerate(grads):
                block[row].copy_(g.reshape(-1).narrow(0, start, width))
            torch.mv(block.t(), ws, out=out.narrow(0, start, width))
        return True

    # -- representation-level gradients (MGDA-UB style) --------------------------------------

    def representation(
        self,
        losses: LossVector,
        z: torch.Tensor,
        task_params: Sequence[Sequence[nn.Parameter]],
    ) -> torch.Tensor:
        """``[K, z.numel()]`` gradients of each loss with respect to the representation ``z``.

        Heads are differentiated here (each task's own parameters get its gradient); the graph
        is kept for :meth:`backward_representation`.
        """
        K = len(losses)
        task_params = task_params or [()] * K
        Z = torch.empty(K, z.numel(), dtype=z.dtype, device=z.device)
        for k in range(K):
            own = list(task_params[k])
            grads = torch.autograd.grad(losses[k], [z, *own], retain_graph=True,
                                        allow_unused=True)
            if grads[0] is None:
                Z[k].zero_()
            else:
                Z[k].copy_(grads[0].reshape(-1))
            for p, g in zip(own, grads[1:]):
                _accumulate(p, g)
        return Z

    def backward_representation(self, z: torch.Tensor, dz: torch.Tensor,
                                retain_graph: bool = False) -> None:
        """Back-propagate ``dz`` from ``z`` into the shared ``.grad`` (frozen coordinates 0)."""
        params = [self.params[i] for i in self._active]
        grads = torch.autograd.grad(z, params, grad_outputs=dz.reshape(z.shape),
                                    retain_graph=retain_graph, allow_unused=True)
        for p in self.params:
            p.grad = None
        for i, g in zip(self._active, grads):
            p = self.params[i]
            if g is None:
                g = torch.zeros_like(p)
            elif self.frozen[i] is not None:
                g.masked_fill_(self.frozen[i], 0)
            p.grad = g

    # -- writing the update -------------------------------------------------------------------

    def scatter(self, d: torch.Tensor) -> None:
        """Write the aggregated ``[n]`` update into the shared parameters' ``.grad``.

        Fully trainable parameters get views of ``d`` (no copy: ``d`` is this step's own
        tensor); partly frozen ones a reused buffer with frozen coordinates exactly 0;
        parameters with no trainable coordinate get ``None``.
        """
        d = d.detach()
        for i, p in enumerate(self.params):
            size = self.layout.sizes[i]
            if size == 0:
                p.grad = None
                continue
            src = d.narrow(0, self.layout.offsets[i], size)
            if src.dtype != p.dtype:
                src = src.to(p.dtype)
            if self.index[i] is None:
                p.grad = src.view(p.shape)
            else:
                grad = self._grad_buf(i)
                grad.zero_()
                grad.view(-1).index_copy_(0, self.index[i], src)
                p.grad = grad

    def write_weighted(self, J: torch.Tensor, w: torch.Tensor) -> None:
        """``.grad = w^T J`` scattered to the parameters (one matrix-vector product).

        The product lands in a reused ``[n]`` buffer whose slices become the ``.grad`` views.
        """
        d = self._d_buffer
        if d is None or d.shape[0] != J.shape[1] or d.dtype != J.dtype or d.device != J.device:
            d = self._d_buffer = torch.empty(J.shape[1], dtype=J.dtype, device=J.device)
        torch.mv(J.t(), w.to(J.dtype), out=d)
        self.scatter(d)

    # -- the two gradient producers -----------------------------------------------------------

    def _loop(self, losses, shared, task_params, retain_graph):
        K = len(losses)
        for k in range(K):
            own = list(task_params[k])
            keep = retain_graph or k < K - 1
            grads = torch.autograd.grad(losses[k], [*shared, *own], retain_graph=keep,
                                        allow_unused=True)
            yield grads[: len(shared)], grads[len(shared):]

    def _batched(self, losses, shared, task_params, retain_graph):
        K = len(losses)
        losses = _as_tensor(losses)
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


def _as_tensor(losses: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """``[K]`` losses for the batched producer (one vmapped call needs them stacked)."""
    return losses if isinstance(losses, torch.Tensor) else torch.stack(
        [loss.reshape(()) for loss in losses])


def _accumulate(p: nn.Parameter, g: torch.Tensor | None) -> None:
    if g is None:
        return
    if p.grad is None:
        p.grad = g.detach().clone() if g.requires_grad else g
    else:
        p.grad.add_(g)
