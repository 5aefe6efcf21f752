"""The aggregator interface: ``agg(J, **context) -> d``.

``J`` is the ``[K, n]`` matrix of per-task gradients on the shared *trainable* coordinates
(float32 or float64), ``d`` the ``[n]`` update direction written into ``.grad``. The base class
validates input once, so every method shares the same guarantees:

* NaN or Inf in ``J`` raises :class:`~mtlkit.errors.GradientError` naming the task rows
  (the trainer may instead skip the step when configured to; never a silent NaN update);
* an all-zero ``J`` gives a zero update; ``K = 1`` gives that task's gradient;
* shapes and dtypes are checked; the result has ``J``'s dtype and device;
* the result is detached: it carries no autograd graph even when ``J`` requires grad (an
  update direction is data for ``.grad``, not a function to differentiate; keeping the graph
  would hold every intermediate of the solve alive until the next step).

What an aggregator needs is declared in :attr:`Aggregator.requires`:

``"jacobian"``
    the full ``[K, n]`` matrix (default);
``"gramian"``
    only ``G = J J^T`` and a weighted combination: implement :meth:`GramianWeighting.weights`
    and the trainer never has to form more than it needs;
``"losses"``
    only the task losses (loss-level weightings such as UW, DWA, FAMO): implement
    :meth:`LossWeighting.loss_weights`; the trainer then needs one backward pass of
    ``sum_k w_k L_k`` instead of K.

Context keys the trainer passes (an aggregator takes what it uses, ignores the rest):
``losses`` (``[K]`` tensor, detached), ``step``, ``epoch``, ``task_names``, ``generator``
(a seeded :class:`torch.Generator` for randomised methods), ``representation_jacobian``
(``[K, r]``, gradients w.r.t. the shared representation, for "-UB" variants) and ``gramian``
(``J J^T`` if already computed).

Properties an aggregator claims (checked by :mod:`mtlkit.testing`):

``non_conflicting``        ``J d >= -tol``: no task's loss increases to first order;
``permutation_invariant``  permuting the rows of ``J`` does not change ``d``;
``positively_homogeneous`` ``agg(a J) = a agg(J)`` for every scalar ``a > 0`` (scaling all the
                           losses by one factor scales the update by it);
``linear_under_scaling``   row-wise: ``c -> agg(diag(c) J)`` is linear on ``c > 0``, i.e.
                           ``agg(diag(α c1 + β c2) J) = α agg(diag(c1) J) + β agg(diag(c2) J)``
                           for positive ``c1, c2`` and ``α, β > 0`` (Quinton & Rey 2024, as in
                           TorchJD); it implies ``positively_homogeneous``, not the converse;
``weighted``               ``d`` lies in the row span of ``J`` (``d = w^T J``);
``conflict_only``          equals the mean when no pair of rows conflicts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import torch

from mtlkit.errors import ConfigError, GradientError
from mtlkit.statedict import export_state, import_state

PROPERTIES = frozenset(
    {"non_conflicting", "permutation_invariant", "positively_homogeneous",
     "linear_under_scaling", "weighted", "conflict_only"}
)
REQUIREMENTS = frozenset({"jacobian", "gramian", "losses"})


class Aggregator:
    """Base class of gradient aggregators.

    Subclasses set :attr:`properties` and implement :meth:`aggregate`. Stateful methods set
    :attr:`stateful` and override :meth:`reset`. Methods with learnable parameters of their own
    (e.g. uncertainty weighting) return them from :meth:`parameters`; the trainer adds them to
    the optimizer, and the aggregator writes their ``.grad`` inside :meth:`aggregate`.
    """

    properties: ClassVar[frozenset[str]] = frozenset()
    requires: ClassVar[str] = "jacobian"
    #: ``"parameters"``: rows of ``J`` are gradients on the shared parameters; ``"representation"``:
    #: the method is defined on gradients w.r.t. the shared representation (MGDA-UB), and the
    #: trainer then uses the engine's representation path for it whatever ``jacobian`` says.
    gradient_level: ClassVar[str] = "parameters"
    #: solves its weights iteratively (e.g. Nash-MTL): ``mtlkit bench`` reports its overhead
    #: instead of holding it to the 1.10x-of-K-backward target
    iterative_solver: ClassVar[bool] = False
    stateful: ClassVar[bool] = False
    #: :meth:`after_step` wants ``context["losses_after"]``: the same batch's task losses after
    #: the optimizer step (FAMO). The engine computes them only when the caller can (the Trainer
    #: does; an own loop passes ``losses_after=`` to :meth:`mtlkit.MTLBackward.backward`).
    needs_losses_after: ClassVar[bool] = False
    #: context keys beyond ``J`` that :meth:`aggregate` reads (e.g. ``{"losses", "layout"}``);
    #: documentation for users and a check for callers that build the context themselves
    context_keys: ClassVar[frozenset[str]] = frozenset()

    def __call__(self, J: torch.Tensor, **context: Any) -> torch.Tensor:
        norms = check_jacobian(J, context.get("task_names"))
        # the update is data for .grad: no method differentiates through J, and a J that
        # requires grad must not reach solvers that leave torch (numpy, quadprog)
        J = J.detach()
        norms = norms.detach()
        K = J.shape[0]
        if K == 1:
            return J[0].clone()
        # A zero norm can also be an underflow (|x| < 1e-19 squares to 0 in float32), so an
        # all-zero verdict is confirmed exactly; the extra pass runs only in that rare case.
        if bool((norms == 0).all()) and not bool(J.any()):
            return torch.zeros(J.shape[1], dtype=J.dtype, device=J.device)
        d = self.aggregate(J, context)
        if d.shape != (J.shape[1],):
            raise RuntimeError(
                f"{type(self).__name__} returned shape {tuple(d.shape)}, expected ({J.shape[1]},)"
            )
        return d.detach().to(J.dtype)

    def aggregate(self, J: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        """Compute the update direction for a validated ``[K, n]`` matrix with ``K >= 2``."""
        raise NotImplementedError

    def reset(self) -> None:
        """Forget state between runs (no-op for stateless aggregators)."""

    def parameters(self) -> list[torch.Tensor]:
        """Learnable parameters owned by the aggregator (usually none)."""
        return []

    def configure(self, num_tasks: int) -> None:
        """Called once by the engine with the task count K before the first step (e.g. UW
        creates one log-variance per task); default: nothing."""

    def after_step(self, context: dict[str, Any]) -> None:
        """Called after the optimizer step (e.g. FAMO's logit update); default: nothing."""

    #: attributes that are caches rebuilt on demand, left out of :meth:`state_dict`
    transient_state: ClassVar[frozenset[str]] = frozenset()

    def state_dict(self) -> dict[str, Any]:
        """The state a checkpoint keeps, as plain data (tensors, numbers, str, bool, None,
        lists/dicts): a checkpoint is loaded with ``weights_only=True``, so it never holds
        pickled objects. Default: the attrs fields declared ``init=False`` (any instance
        attribute for a non-attrs class), minus :attr:`transient_state`; a value that is not
        plain data is an error naming it (see :mod:`mtlkit.statedict`)."""
        return export_state(self, self.transient_state)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` into this (configured) aggregator; tensors of the same
        shape are copied in place, so an optimizer holding :meth:`parameters` stays valid."""
        import_state(self, state, self.transient_state)

    def __repr__(self) -> str:
        fields = getattr(self, "__attrs_attrs__", ())
        args = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields if f.init)
        return f"{type(self).__name__}({args})"


class GramianWeighting(Aggregator):
    """An aggregator whose direction is ``d = w^T J`` with ``w`` a function of ``G = J J^T``.

    Implement :meth:`weights`. Claims ``weighted`` automatically.
    """

    requires: ClassVar[str] = "gramian"

    def weights(self, G: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        raise NotImplementedError

    def aggregate(self, J: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        G = context.get("gramian")
        if G is None:
            G = gramian_matrix(J)
        w = self.weights(G, context).to(device=J.device, dtype=J.dtype)
        return w @ J


class LossWeighting(Aggregator):
    """An aggregator that weights losses: ``d = w^T J`` with ``w`` from losses and history.

    Implement :meth:`loss_weights`; with ``requires = "losses"`` the trainer takes one backward
    pass of ``sum_k w_k L_k`` and never forms ``J`` (except when a probe asks for it).

    :cvar head_gradients: what task ``k``'s own parameters (its head) receive. ``"weighted"``
        (default): ``w_k grad L_k``, the gradient of the weighted loss, as in the published
        implementations of UW, DWA, RLW and FAMO. ``"own"``: ``grad L_k``, as every
        Jacobian-level aggregator gives the heads (equal weighting uses this, so the mean
        aggregator's heads train exactly as under any gradient-manipulation method).
    """

    requires: ClassVar[str] = "losses"
    head_gradients: ClassVar[str] = "weighted"

    def loss_weights(self, losses: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        raise NotImplementedError

    def aggregate(self, J: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        losses = context.get("losses")
        if losses is None:
            raise ConfigError(f"{type(self).__name__} needs the task losses in its context")
        w = self.loss_weights(losses, context).to(device=J.device, dtype=J.dtype)
        return w @ J


def check_jacobian(J: object, task_names: Iterable[str] | None = None) -> torch.Tensor:
    """Validate an aggregator input; raise with a message naming the offending rows.

    Returns the row norms (``[K]``; all zero means a zero update). NaN and Inf propagate into a
    row's norm, so one vectorised reduction replaces the element-wise ``isfinite`` (measured
    about 60x cheaper at n = 1e6); only a non-finite norm triggers the exact, row-naming check
    (it may also be an overflow of finite entries, which is then accepted).
    """
    if not isinstance(J, torch.Tensor):
        raise TypeError(f"J must be a torch.Tensor, got {type(J).__name__}")
    if J.ndim != 2:
        raise ValueError(f"J must be 2-D [K tasks, n coordinates], got shape {tuple(J.shape)}")
    if J.shape[0] < 1:
        raise ValueError("J must have at least one task row")
    if not J.dtype.is_floating_point:
        raise TypeError(f"J must be floating point (float32 or float64), got {J.dtype}")
    norms = torch.linalg.vector_norm(J, dim=1)
    if bool(torch.isfinite(norms).all()):
        return norms
    finite = torch.isfinite(J).all(dim=1)
    if not bool(finite.all()):
        raise nonfinite_error([int(i) for i in torch.nonzero(~finite).flatten()], task_names)
    return norms


def nonfinite_error(rows: Sequence[int], task_names: Iterable[str] | None) -> GradientError:
    """The error for non-finite task gradients, naming the tasks."""
    names = list(task_names) if task_names is not None else []
    label = ", ".join(names[i] if i < len(names) else f"row {i}" for i in rows)
    return GradientError(
        f"non-finite (NaN/Inf) task gradient for {label}; refusing to update "
        "(set nonfinite='skip' in the training config to skip such steps instead)")


#: columns per piece in :func:`gramian_matrix`
GRAMIAN_CHUNK = 1 << 18


def gramian_matrix(J: torch.Tensor) -> torch.Tensor:
    """``J J^T``, accumulated over ``[K, 256k]`` column pieces.

    One ``J @ J.T`` with a huge inner dimension sometimes takes a slow CPU kernel: at K = 10,
    n = 1.07M (2 threads) it took 16.8 ms against 7.7 ms in 256k pieces; at every other
    measured (K, n) in {2, 4, 10, 40} x {0.2M, 1.07M} the pieces cost the same as one product
    (within 5%), so they are always used on CPU.
    """
    K, n = J.shape
    if n <= GRAMIAN_CHUNK or J.device.type != "cpu":
        return J @ J.T
    G = torch.zeros(K, K, dtype=J.dtype, device=J.device)
    for start in range(0, n, GRAMIAN_CHUNK):
        piece = J.narrow(1, start, min(GRAMIAN_CHUNK, n - start))
        G.addmm_(piece, piece.t())
    return G


