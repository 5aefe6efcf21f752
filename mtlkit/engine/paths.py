"""The gradient paths of :class:`~mtlkit.engine.MTLBackward`, one class each.

Which one runs is fixed when the engine is built (:func:`choose_path`), never per step:

``losses``          loss-level weightings (``requires == "losses"``, equal weighting included):
                    one backward of ``sum_k w_k L_k``; per-task gradients only when a probe is due.
``loop``/``batched`` the ``[K, n]`` Jacobian on the trainable coordinates (K ``autograd.grad``
                    calls, or one vmapped call); Gramian weightings get ``G`` and write ``w^T J``.
``gramian``         Gramian weightings without ever forming ``J`` (batched producer: blocks used
                    in place; loop producer: cache-sized pieces).
``representation``  gradients with respect to the shared features ``z`` (MGDA-UB style); one
                    backward of ``z`` with the aggregated ``dz`` fills the shared ``.grad``.
``full``            ``mask_point="full"`` with a sparse mask: the aggregator sees every shared
                    coordinate and its update is masked (Eq. 9 of the sparse-training paper).

Each ``run`` fills the shared and task-specific ``.grad`` and returns the weights when the method
has them. Gradients may be scaled by a ``GradScaler``: ``scale`` is the factor every gradient
carries; aggregators always see unscaled values, and ``.grad`` is written scaled again so the
scaler's own ``unscale_``/inf check stays in charge of the optimizer step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch

from mtlkit.aggregation import (
    Aggregator,
    GramianWeighting,
    check_jacobian,
    gramian_matrix,
    nonfinite_error,
)
from mtlkit.errors import ConfigError, GradientError
from mtlkit.jacobian import all_finite, check_gramian

if TYPE_CHECKING:
    from mtlkit.engine.backward import MTLBackward

PATHS = ("losses", "loop", "batched", "gramian", "representation", "autogram")


def uses_gramian_weights(aggregator: Aggregator) -> bool:
    """A Gramian weighting that keeps the base ``aggregate``: only ``w(G)`` is ever asked of it.
    """
    return (isinstance(aggregator, GramianWeighting)
            and type(aggregator).aggregate is GramianWeighting.aggregate)


def choose_path(aggregator: Aggregator, jacobian: str, features: bool,
                name: str | None = None) -> str:
    """The path a run takes; incompatible choices are one error naming both sides
    (``name``: what the user called the aggregator)."""
    label = repr(name) if name is not None else type(aggregator).__name__
    if jacobian not in PATHS[1:]:
        raise ConfigError(f"invalid jacobian={jacobian!r}: must be one of "
                          f"{', '.join(PATHS[1:])}")
    if aggregator.requires == "losses":
        return "losses"
    if features or aggregator.gradient_level == "representation":
        return "representation"
    if jacobian == "autogram" and not uses_gramian_weights(aggregator):
        raise ConfigError(
            f"jacobian='autogram' cannot run aggregator {label}: it forms "
            "only G = J J^T and w^T J, so it serves Gramian weightings (mgda, upgrad, imtl_g, "
            "dualproj, ...); use jacobian='loop' or 'batched' with this method")
    if jacobian == "gramian" and aggregator.requires != "gramian":
        raise ConfigError(
            f"jacobian='gramian' cannot run aggregator {label}: it needs the "
            f"full [K, n] Jacobian (requires={aggregator.requires!r}), and gramian mode only "
            "forms J J^T; use jacobian='loop' or 'batched' with it")
    return jacobian


class Path:
    """One way of turning ``[K]`` losses into ``.grad``."""

    name: ClassVar[str]

    def __init__(self, eng: MTLBackward) -> None:
        self.eng = eng

    def run(self, losses: torch.Tensor, context: dict[str, Any], due: list[str],
            features: torch.Tensor | None) -> torch.Tensor | None:
        raise NotImplementedError

    # -- shared helpers ------------------------------------------------------------------

    def weights(self, G: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        """A Gramian weighting's ``w`` with the base class's guarantees checked on ``G``."""
        eng = self.eng
        K = G.shape[0]
        if check_gramian(G, eng.task_names):  # all-zero J: zero update
            return torch.zeros(K, dtype=G.dtype, device=G.device)
        if K == 1:
            return torch.ones(1, dtype=G.dtype, device=G.device)
        w = eng.aggregator.weights(G, context)  # type: ignore[attr-defined]  # a GramianWeighting
        w = w.detach().to(device=G.device, dtype=G.dtype)
        if w.shape != (K,):
            raise RuntimeError(f"{type(eng.aggregator).__name__}.weights returned shape "
                               f"{tuple(w.shape)}, expected ({K},)")
        if not bool(torch.isfinite(w).all()):
            raise GradientError(f"aggregator {eng.aggregator_name!r} returned non-finite weights")
        return w

    def checked(self, d: torch.Tensor) -> torch.Tensor:
        if not all_finite(d):
            raise GradientError(f"aggregator {self.eng.aggregator_name!r} returned a non-finite "
                                "update")
        return d.detach()

    def aggregate(self, J: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        return self.checked(self.eng.aggregator(J, **context))


class LossPath(Path):
    name = "losses"

    def run(self, losses, context, due, features):
        eng = self.eng
        if due:  # probes still need the per-task gradients (summed over micro-batches)
            result = eng.engine.compute(losses, [], full=True, retain_graph=True)
            J, _ = eng.accumulate(result.J)
            full = eng.accumulate_full(result.full_grads)
            if J is not None:
                eng.observe(due, eng.reduced(J), eng.reduced_full(full), context)
        if not isinstance(losses, torch.Tensor):
            losses = torch.stack(losses)
        weights = eng.aggregator.loss_weights(context["losses"], context).detach()
        weights = weights.to(device=losses.device, dtype=losses.dtype)
        own_heads = eng.aggregator.head_gradients == "own"
        # with accumulation, earlier micro-batches' head gradients must not be re-divided
        before = ([[None if p.grad is None else p.grad.clone() for p in ps]
                   for ps in eng.task_params] if own_heads and eng.accumulation_steps > 1
                  else None)
        # the graph is kept (no extra time) so that a non-finite gradient can be traced back
        # to the tasks that caused it
        (weights * losses).sum().backward(retain_graph=True)
        eng.reducer.mean_grads_(eng.all_params())
        if not eng.grads_finite():
            self._name_nonfinite_tasks(losses)
        eng.mask_shared_grads()
        if own_heads:
            # each task's own parameters get grad L_k, not w_k grad L_k
            for k, (w, params) in enumerate(zip(weights.tolist(), eng.task_params)):
                if w == 0:
                    continue
                for i, p in enumerate(params):
                    if p.grad is None:
                        continue
                    prior = before[k][i] if before is not None else None
                    if prior is None:
                        p.grad.div_(w)
                    else:
                        p.grad.sub_(prior).div_(w).add_(prior)
        return weights

    def _name_nonfinite_tasks(self, losses: torch.Tensor) -> None:
        """Per-task gradients, only after a non-finite weighted backward: name the tasks."""
        eng = self.eng
        J = eng.engine.compute(losses, [], retain_graph=True).J
        check_jacobian(J, eng.task_names)
        bad = [k for k, ps in enumerate(eng.task_params or [])
               if any(p.grad is not None and not all_finite(p.grad) for p in ps)]
        if bad:
            raise nonfinite_error(bad, eng.task_names)
        raise GradientError("non-finite (NaN/Inf) gradient of the weighted loss; refusing to "
                            "update (nonfinite='skip' skips such steps instead)")


class JacobianPath(Path):
    name = "loop"

    def run(self, losses, context, due, features):
        eng = self.eng
        result = eng.engine.compute(losses, eng.task_params, full=bool(due))
        J, _ = eng.accumulate(eng.unscaled(result.J))
        full = eng.accumulate_full(result.full_grads)
        if J is None:  # a micro-batch of gradient accumulation: nothing to apply yet
            return None
        J = eng.reduced(J)
        eng.reducer.mean_grads_(p for ps in eng.task_params for p in ps)
        gramian_weights = eng.gramian_weights
        if gramian_weights or eng.aggregator.requires == "gramian":
            context["gramian"] = gramian_matrix(J)
        if due:
            eng.observe(due, J, eng.reduced_full(full), context)
        if gramian_weights:
            # d = w^T J with w from G alone: one mm, one mv, O(K) checks, no pass over J
            w = self.weights(context["gramian"], context)
            eng.engine.write_weighted(J, w * eng.scale)
            return w
        d = self.aggregate(J, context)
        eng.engine.scatter(d * eng.scale if eng.scale != 1.0 else d)
        return None


class GramianPath(Path):
    name = "gramian"

    def run(self, losses, context, due, features):
        eng = self.eng
        G, kept = eng.engine.gramian(losses, eng.task_params, full=bool(due))
        if eng.scale != 1.0:
            G = G / (eng.scale * eng.scale)
        context["gramian"] = G
        J = None
        if due or not eng.gramian_weights:
            J = eng.unscaled(eng.engine.assemble(kept.per_task))
        if due:
            eng.observe(due, J, kept.per_task, context)
        if J is not None and not eng.gramian_weights:
            # the aggregator overrides aggregate(): it gets J (formed from the kept gradients)
            d = self.aggregate(J, context)
            eng.engine.scatter(d * eng.scale if eng.scale != 1.0 else d)
            return None
        w = self.weights(G, context)
        # the kept gradients carry the scaler's factor already: sum_k w_k g_k is scaled
        eng.engine.write_combination(kept, w)
        return w


class RepresentationPath(Path):
    name = "representation"

    def run(self, losses, context, due, features):
        eng = self.eng
        if features is None:
            raise ConfigError(
                "this engine aggregates gradients w.r.t. the shared features (features=True, or "
                f"aggregator {eng.aggregator_name!r} is representation-level): pass "
                "backward(losses, features=z) with z the shared representation the heads read")
        if due:  # the probes observe parameter-level gradients, as in every other mode
            result = eng.engine.compute(losses, [], full=True, retain_graph=True)
            eng.observe(due, eng.unscaled(result.J), result.full_grads, context)
        Z = eng.unscaled(eng.engine.representation(losses, features, eng.task_params))
        check_jacobian(Z, eng.task_names)
        w = None
        if eng.gramian_weights:
            G = gramian_matrix(Z)
            context["gramian"] = G
            w = self.weights(G, context)
            dz = torch.mv(Z.t(), w)
        else:
            context["representation_jacobian"] = Z
            dz = self.aggregate(Z, context)
        eng.engine.backward_representation(features, dz * eng.scale)
        return w


class FullPointPath(Path):
    name = "full"

    def run(self, losses, context, due, features):
        eng = self.eng
        result = eng.engine.compute(losses, eng.task_params, full=True)
        J = eng.reduced(eng.unscaled(result.J))
        eng.reducer.mean_grads_(p for ps in eng.task_params for p in ps)
        full_grads = eng.reduced_full(result.full_grads)
        J_full = eng.full_jacobian(full_grads, J)
        if eng.aggregator.requires == "gramian":
            context["gramian"] = gramian_matrix(J_full)
        if due:  # probes observe the trainable J; the full Gramian is not its Gramian
            eng.observe(due, J, full_grads, {})
        d = self.aggregate(J_full, context)
        d = d.index_select(0, eng.trainable_index(d.device))
        eng.engine.scatter(d * eng.scale if eng.scale != 1.0 else d)
        return None


class AutogramPath(Path):
    """Gramian weightings without J or any task's full weight gradient on Linear/Conv2d layers
    (:mod:`mtlkit.engine.autogram`): ``G`` from activation Gram matrices and the layers'
    output gradients, then ``.grad = w^T J`` layer by layer."""

    name = "autogram"

    def run(self, losses, context, due, features):
        eng = self.eng
        autogram = eng.autogram
        assert autogram is not None
        parts = list(losses) if not isinstance(losses, torch.Tensor) else [
            losses[k] for k in range(losses.shape[0])]
        G = autogram.gramian(parts, eng.task_params, retain_graph=bool(due))
        if eng.scale != 1.0:
            G = G / (eng.scale * eng.scale)
        context["gramian"] = G
        if due:  # probes need per-task gradients: one more pass, only on their steps
            result = eng.engine.compute(parts, [], full=True)
            eng.observe(due, eng.unscaled(result.J), result.full_grads, context)
        w = self.weights(G, context)
        autogram.write_combination(w * eng.scale)
        return w


PATH_CLASSES: dict[str, type[Path]] = {
    "autogram": AutogramPath,
    "losses": LossPath, "loop": JacobianPath, "batched": JacobianPath, "gramian": GramianPath,
    "representation": RepresentationPath, "full": FullPointPath}
