"""``MTLBackward``: every aggregator, mask and probe for any training loop, in one call.

::

    mtl = mtlkit.MTLBackward(model.encoder, aggregator="upgrad", mask="psn",
                             probes=["cosine"], optimizer=optimizer)
    for x, y in loader:
        optimizer.zero_grad()
        losses = {t: loss_fn[t](head(z), y[t]) for t, head in heads.items()}
        report = mtl.backward(losses)      # shared .grad = aggregated update, heads: own grads
        optimizer.step()                   # frozen coordinates restored by a step hook

What one call does: the per-task gradients on the shared *trainable* coordinates (``[K, n]``, or
only ``G = J J^T`` for Gramian methods), each task-specific parameter's gradient of its own loss,
the due probes, the aggregation, and the update written into ``.grad`` (frozen coordinates
exactly 0). Which parameters are task-specific is found by walking each loss's autograd graph on
the first call (or given as ``task_params``). The :class:`~mtlkit.trainer.Trainer` is one caller
of this class among others; ``docs/own-model.md`` shows the rest.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs
import torch
from torch import nn

from mtlkit.aggregation import Aggregator
from mtlkit.engine.autogram import AutogramEngine
from mtlkit.engine.distributed import Reducer
from mtlkit.engine.paths import PATH_CLASSES, choose_path, uses_gramian_weights
from mtlkit.engine.resolve import (
    discover_task_params,
    named_shared,
    owning_modules,
    per_task_roots,
    plugin,
    registered_name,
    stack_losses,
)
from mtlkit.errors import ConfigError, GradientError, invalid_value
from mtlkit.jacobian import JacobianEngine
from mtlkit.masking import FrozenGuard, MaskContext, MaskStrategy, ParameterMask
from mtlkit.plugins import PluginManager
from mtlkit.probing import ConflictProbe, GradientObservation

NONFINITE = ("error", "skip")
MASK_POINTS = ("trainable", "full")


@attrs.frozen
class BackwardReport:
    """What one :meth:`MTLBackward.backward` call did.

    :ivar step: the engine's optimizer-step counter for this call (0-based).
    :ivar losses: each task's loss value.
    :ivar weights: ``[K]`` task weights when the method has them (Gramian and loss-level
        methods), else ``None``.
    :ivar probes: ``{"probe.metric": value}`` of the probes due at this step.
    :ivar skipped: no update was written (non-finite values with ``nonfinite="skip"``, or left
        to a ``GradScaler`` that will skip the optimizer step); ``reason`` says why.
    :ivar applied: ``False`` for the micro-batches of gradient accumulation before the last.
    """

    step: int
    losses: dict[str, float]
    weights: torch.Tensor | None = None
    probes: dict[str, float] = attrs.field(factory=dict)
    skipped: bool = False
    reason: str | None = None
    applied: bool = True


class MTLBackward:
    """The engine: per-task gradients, masks, probes and aggregation for any training loop.

    :param shared_params: the shared parameters: an ``nn.Module`` (its parameters that require
        grad), ``(name, parameter)`` pairs, or parameters. Every other parameter a loss reaches is
        task-specific and gets the plain gradient of its own task's loss.
    :param aggregator: a registered name, ``{"name": ..., **params}``, or an
        :class:`~mtlkit.aggregation.Aggregator` (stateful ones keep their state across calls).
    :param mask: ``None``/``"dense"``, a registered mask strategy (name, mapping or instance),
        a :class:`~mtlkit.masking.ParameterMask`, or ``{parameter name: bool tensor}``. Selected
        here, or on the first call for strategies that need gradients (``needs_gradients``).
    :param probes: probe names, mappings or instances, or ``{name: params or instance}``.
    :param optimizer: the optimizer stepping these parameters. Its step hook restores frozen
        coordinates bit-identically (momentum, Adam, AdamW weight decay) and runs the
        aggregator's ``after_step``; without it call :meth:`after_optimizer_step` yourself.
    :param features: aggregate gradients with respect to the shared representation (MGDA-UB
        style): pass ``backward(losses, features=z)``.
    :param task_params: per task (a sequence or ``{task: params}``), the parameters only that
        task's loss reaches; default: found from the autograd graph on the first call.
    :param tasks: the task names, in the order of unnamed losses (default: the keys of a
        ``losses`` dict or of ``task_params``, else ``task0, task1, ...``).
    :param jacobian: ``loop`` (default), ``batched``, ``gramian``, ``representation``, or
        ``autogram`` (Gramian weightings only: ``G`` from layer activations, never ``J``).
    :param model: the module whose forward computes the shared layers (``autogram`` hooks
        its Linear/Conv2d layers); default: ``shared_params`` when it is a module.
    :param mask_point: ``trainable`` (the aggregator sees the trainable coordinates) or ``full``.
    :param nonfinite: ``error`` (raise :class:`~mtlkit.errors.GradientError` naming the task)
        or ``skip`` (report ``skipped`` and leave every ``.grad`` empty).
    :param accumulation_steps: aggregate once every N calls on the summed per-task gradients of
        N micro-batches (each loss is divided by N, so the result is the full batch's mean).
    :param scaler: a ``torch.amp.GradScaler``: losses are scaled before differentiation, the
        aggregator sees unscaled gradients, and ``.grad`` is written scaled for
        ``scaler.step(optimizer)``; an inf/NaN step is left to the scaler, which skips it.
    :param seed: seeds the generator randomised methods and mask strategies use.
    :param total_steps: the run's length, so probes can tell the last half of training.
    :param process_group: a ``torch.distributed`` group of data-parallel workers (e.g.
        ``torch.distributed.group.WORLD``): losses, the Jacobian and task gradients are
        averaged before aggregation, so every worker applies the update one process would
        compute on the global batch (:mod:`mtlkit.engine.distributed`). Do not also wrap the
        model in DDP.
    """

    def __init__(
        self,
        shared_params: nn.Module | Iterable[Any],
        aggregator: Any = "mean",
        *,
        mask: Any = None,
        probes: Any = (),
        optimizer: torch.optim.Optimizer | None = None,
        features: bool = False,
        task_params: Sequence[Iterable[torch.Tensor]] | Mapping[str, Iterable[torch.Tensor]]
        | None = None,
        tasks: Sequence[str] | None = None,
        jacobian: str = "loop",
        mask_point: str = "trainable",
        nonfinite: str = "error",
        probe_every: int = 1,
        accumulation_steps: int = 1,
        scaler: Any = None,
        seed: int = 0,
        total_steps: int | None = None,
        process_group: Any = None,
        model: nn.Module | None = None,
        plugins: PluginManager | None = None,
    ) -> None:
        for field, value, allowed in (("nonfinite", nonfinite, NONFINITE),
                                      ("mask_point", mask_point, MASK_POINTS)):
            if value not in allowed:
                raise invalid_value(field, value, f"must be one of {', '.join(allowed)}")
        for field, count in (("probe_every", probe_every),
                             ("accumulation_steps", accumulation_steps)):
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise invalid_value(field, count, "must be an integer >= 1")
        self.shared = named_shared(shared_params)
        self._modules = owning_modules(shared_params)
        self.aggregator: Aggregator = plugin("aggregator", aggregator, Aggregator, plugins)
        self.aggregator_name = registered_name("aggregator", aggregator, self.aggregator, plugins)
        self.probes = _resolve_probes(probes, plugins)
        self.nonfinite, self.mask_point = nonfinite, mask_point
        self.probe_every, self.accumulation_steps = probe_every, accumulation_steps
        self.scaler, self.total_steps = scaler, total_steps
        self.gramian_weights = uses_gramian_weights(self.aggregator)
        self.reducer = Reducer(process_group)
        path = choose_path(self.aggregator, "loop" if jacobian == "representation" else jacobian,
                           features or jacobian == "representation", self.aggregator_name)
        if self.reducer.active and path == "representation":
            raise ConfigError("process_group cannot run the representation path (each worker's "
                              "features are its own shard's rows); use loop or batched")
        if path == "autogram" and (self.reducer.active or accumulation_steps > 1):
            raise ConfigError("jacobian='autogram' runs without process_group and "
                              "accumulation_steps; use jacobian='gramian' for those")
        hooked = model if model is not None else (
            shared_params if isinstance(shared_params, nn.Module) else None)
        if path == "autogram" and hooked is None:
            raise ConfigError("jacobian='autogram' hooks the shared layers: pass the shared "
                              "part as a module, or model=")
        self._hooked = hooked
        self.autogram: AutogramEngine | None = None
        if self.reducer.active and path == "gramian":
            path = "loop"  # the averaged Jacobian is formed once, then aggregated
        if path == "representation" and accumulation_steps > 1:
            raise ConfigError("accumulation_steps > 1 cannot run the representation path "
                              "(each micro-batch has its own features); use loop or batched")
        if path == "gramian" and accumulation_steps > 1:
            path = "loop"  # accumulation sums J over micro-batches: form it
        self.path_name = path
        self.engine = JacobianEngine(self.shared, None,
                                     mode="batched" if jacobian == "batched" else "loop")
        self.generator = torch.Generator(device=self.shared[0][1].device).manual_seed(seed + 1)
        self.seed = seed
        self.step = 0
        self.epoch = 0
        self.task_names: list[str] | None = (
            [str(t) for t in tasks] if tasks is not None else
            [str(t) for t in task_params] if isinstance(task_params, Mapping) else None)
        self._path: Any = None
        self.task_params: list[list[torch.Tensor]] | None = None
        self._given_task_params = task_params
        self._micro = 0
        self._acc: torch.Tensor | None = None
        self._acc_full: Any = None
        self._pending: tuple[dict[str, Any], Callable[[], Any] | None] | None = None
        self._flat_index: torch.Tensor | None = None
        self.mask_strategy: MaskStrategy | None = None
        self.mask = ParameterMask({n: torch.ones_like(p, dtype=torch.bool) for n, p in self.shared})
        self.guard = FrozenGuard({}, self.mask)
        self._resolve_mask(mask, plugins)
        if self.path_name == "autogram" and self.autogram is None:
            assert self._hooked is not None  # the autogram path requires it (checked above)
            self.autogram = AutogramEngine(self._hooked, self.shared, masks=self.mask.masks)
        self.optimizer: torch.optim.Optimizer | None = None
        self._hook: Any = None
        if optimizer is not None:
            self.attach_optimizer(optimizer)
        elif self.guard.active:
            warnings.warn("a sparse mask without optimizer=: frozen coordinates get zero "
                          "gradient, but momentum or weight decay would still move them; pass "
                          "optimizer= or call after_optimizer_step() after each step",
                          stacklevel=2)

    # -- masks ------------------------------------------------------------------------------

    def _resolve_mask(self, mask: Any, plugins: PluginManager | None) -> None:
        if mask is None or (isinstance(mask, str) and mask == "dense"):
            return
        if isinstance(mask, ParameterMask):
            self.set_mask(mask)
            return
        if isinstance(mask, Mapping) and "name" not in mask:
            self.set_mask(ParameterMask.from_selection(dict(self.shared), mask))
            return
        self.mask_strategy = plugin("mask", mask, MaskStrategy, plugins)
        if not self.mask_strategy.needs_gradients:
            self.set_mask(self.select_mask(None))

    def select_mask(self, magnitudes: Callable[[int], dict[str, torch.Tensor]] | None,
                    step: int = 0) -> ParameterMask:
        """The strategy's selection over the shared parameters (deterministic for a seed)."""
        assert self.mask_strategy is not None
        shared = dict(self.shared)
        modules = self._modules
        ctx = MaskContext(generator=torch.Generator().manual_seed(self.seed + 2 + step),
                          gradient_magnitudes=magnitudes, step=step,
                          modules=None if modules is None else
                          {n: modules[n] for n in shared if n in modules})
        return ParameterMask.from_selection(shared, self.mask_strategy.select(shared, ctx))

    def set_mask(self, mask: ParameterMask) -> None:
        """Make ``mask`` the trainable set: engine layout, frozen-value guard, caches."""
        names = [n for n, _ in self.shared]
        if list(mask.masks) != names:
            mask = ParameterMask.from_selection(dict(self.shared), mask.masks)
        self.mask = mask
        self._flat_index = None
        self.engine.set_mask(mask)
        if self.path_name == "autogram":  # its layer routes depend on the mask
            if self.autogram is not None:
                self.autogram.close()
            assert self._hooked is not None  # the autogram path requires it (__init__)
            self.autogram = AutogramEngine(self._hooked, self.shared, masks=mask.masks)
        self.guard = FrozenGuard(dict(self.shared), mask)

    def attach_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Step ``optimizer`` with this engine: after each of its steps the frozen coordinates
        are restored and the aggregator's ``after_step`` runs (replaces an earlier optimizer)."""
        self._check_optimizer(optimizer)
        self._detach_optimizer()
        self.optimizer = optimizer
        self._hook = optimizer.register_step_post_hook(
            lambda _opt, _args, _kwargs: self.after_optimizer_step())

    def _check_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        held = {id(p) for group in optimizer.param_groups for p in group["params"]}
        frozen = [n for n, p in self.shared
                  if not bool(self.mask.masks[n].all()) and id(p) not in held]
        if frozen:
            raise ConfigError(f"the mask freezes coordinates of {', '.join(frozen[:5])}, which "
                              "the optimizer does not hold: pass the optimizer that steps them")

    # -- the call ---------------------------------------------------------------------------

    def backward(self, losses: Any, *, features: torch.Tensor | None = None,
                 losses_after: Callable[[], Any] | None = None, epoch: int | None = None,
                 progress: float | None = None) -> BackwardReport:
        """Write the aggregated update into the shared ``.grad`` and each task's own gradient
        into its parameters' ``.grad``.

        :param losses: ``[K]`` tensor, K scalar losses, or ``{task: loss}`` (same tasks each call).
        :param features: the shared representation (representation path only).
        :param losses_after: ``() -> losses`` on this batch after the optimizer step, for
            aggregators that declare ``needs_losses_after`` (FAMO); called by the step hook.
        :param epoch: the caller's epoch (aggregator context, probes).
        :param progress: fraction of training done, for probes' last-half summaries.
        """
        if self._pending is not None and self.optimizer is None:
            self.after_optimizer_step()
        stacked, names, parts = stack_losses(losses, self.task_names)
        if epoch is not None:
            self.epoch = epoch
        if self._path is None:
            self._first_call(stacked, names, parts, features)
        global_losses = stacked.detach()
        if self.reducer.active:
            global_losses = self.reducer.mean_(global_losses.clone())
        values = global_losses.tolist()  # one host sync serves the check and the report
        reported = dict(zip(names, values))
        if not all(math.isfinite(v) for v in values):
            bad = [t for t, v in zip(names, values) if not math.isfinite(v)]
            message = f"non-finite loss for task(s) {', '.join(bad)}"
            if self.scaler is not None and self.scaler.is_enabled():
                self.scaler.scale(stacked)  # a float16 overflow: the scaler's to handle
                return self._leave_to_scaler(reported, message)
            return self._nonfinite(message, reported)
        final = self._micro + 1 >= self.accumulation_steps
        # the step number is the same for every micro-batch: a due probe sees the summed
        # per-task gradients of all of them (the paths observe once J is complete)
        due = self._probe_due()
        if self.mask_strategy is not None and self.mask_strategy.reselect_every and \
                self.step > 0 and self.step % self.mask_strategy.reselect_every == 0 and \
                self._micro == 0:
            self.set_mask(self.select_mask(self._magnitudes(stacked), step=self.step))
        context: dict[str, Any] = {
            "losses": global_losses, "step": self.step, "epoch": self.epoch,
            "task_names": self.task_names, "generator": self.generator,
            "layout": self.engine.layout}
        self._progress = progress if progress is not None else (
            self.step / self.total_steps if self.total_steps else 0.0)
        self._row: dict[str, float] = {}
        self._observed_losses = context["losses"]
        # each task is differentiated through its own loss's graph when the caller gave the K
        # losses (a [K] stack would carry every task's backward through every head)
        grad_losses: Any = stacked if parts is None else parts
        self.scale = 1.0
        if self.scaler is not None and self.scaler.is_enabled():
            grad_losses = self.scaler.scale(grad_losses)  # also starts the scaler's bookkeeping
            self.scale = float(self.scaler.get_scale())
        factor = 1.0 / self.accumulation_steps
        if factor != 1.0:
            grad_losses = grad_losses * factor if parts is None else [
                loss * factor for loss in parts]
        try:
            weights = self._path.run(grad_losses, context, due, features)
        except GradientError as exc:
            if self.scale != 1.0:
                return self._leave_to_scaler(reported, str(exc))
            return self._nonfinite(str(exc), reported)
        if not final:
            self._micro += 1
            return BackwardReport(self.step, reported, applied=False)
        self._micro = 0
        self._pending = (context, losses_after)
        report = BackwardReport(self.step, reported, weights=weights, probes=self._row)
        self.step += 1
        return report

    def _first_call(self, losses: torch.Tensor, names: list[str],
                    parts: list[torch.Tensor] | None, features: torch.Tensor | None) -> None:
        self.task_names = names
        given = self._given_task_params
        if given is None:
            self.task_params = discover_task_params(per_task_roots(losses, parts), self.shared,
                                                    names, features)
        elif isinstance(given, Mapping):
            missing = [t for t in names if t not in given]
            if missing:
                raise ConfigError(f"task_params has no entry for task(s) {', '.join(missing)}")
            self.task_params = [list(given[t]) for t in names]
        else:
            given = list(given)
            if len(given) != len(names):
                raise ConfigError(f"task_params has {len(given)} entries for {len(names)} tasks")
            self.task_params = [list(ps) for ps in given]
        self.aggregator.configure(len(names))
        if self.mask_strategy is not None and self.mask_strategy.needs_gradients:
            self.set_mask(self.select_mask(self._magnitudes(losses)))
            if self.optimizer is not None:
                self._check_optimizer(self.optimizer)
        path = self.path_name
        if self.mask_point == "full" and self.guard.active and path not in (
                "losses", "representation"):
            path = "full"
        elif path == "batched" and self.gramian_weights and self.accumulation_steps == 1:
            path = "gramian"  # batched VJPs come stacked: G and w^T J need no J at all
        self._path = PATH_CLASSES[path](self)

    def _magnitudes(self, losses: torch.Tensor) -> Callable[[int], dict[str, torch.Tensor]]:
        """This batch's |grad| of the mean loss (an own loop has no warm-up batches to offer)."""
        params = [p for _, p in self.shared]
        grads = torch.autograd.grad(losses.mean(), params, retain_graph=True, allow_unused=True)
        mags = {n: (torch.zeros_like(p) if g is None else g.abs())
                for (n, p), g in zip(self.shared, grads)}
        return lambda _num_batches: mags

    # -- after the optimizer step ----------------------------------------------------------

    def after_optimizer_step(self) -> None:
        """Restore frozen coordinates and run the aggregator's ``after_step`` (called by the
        optimizer's step hook when ``optimizer=`` was given)."""
        self.guard.restore()
        if self._pending is None:
            return
        context, losses_after = self._pending
        self._pending = None
        if self.aggregator.needs_losses_after and losses_after is not None:
            with torch.no_grad():
                after = stack_losses(losses_after(), self.task_names, need_grad=False)[0]
            context["losses_after"] = self.reducer.mean_(after.detach().clone())
        self.aggregator.after_step(context)

    def close(self) -> None:
        """Remove the optimizer step hook and autogram's layer hooks (the engine stops
        touching the optimizer and the model)."""
        self._detach_optimizer()
        if self.autogram is not None:
            self.autogram.close()

    def _detach_optimizer(self) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    # -- helpers the paths share -------------------------------------------------------------

    def _probe_due(self) -> list[str]:
        return [name for name, probe in self.probes.items()
                if self.step % max(self.probe_every, probe.every) == 0]

    def observe(self, due: list[str], J: torch.Tensor, full_grads: Any,
                context: dict[str, Any]) -> None:
        if full_grads is None:
            return
        assert self.task_names is not None
        obs = GradientObservation(
            step=self.step, epoch=self.epoch, progress=self._progress,
            task_names=self.task_names, J=J, full_grads=full_grads,
            layout=self.engine.layout, losses=self._observed_losses)
        if "gramian" in context:
            # prime the cached property (a slot: attrs classes have no __dict__)
            object.__setattr__(obs, "gramian", context["gramian"])
        for name in due:
            record = self.probes[name].observe(obs)
            if record:
                self._row.update({f"{name}.{k}": v for k, v in record.items()})

    def unscaled(self, J: torch.Tensor) -> torch.Tensor:
        return J if self.scale == 1.0 else J.div_(self.scale)

    def accumulate(self, J: torch.Tensor) -> tuple[torch.Tensor | None, bool]:
        """``(J to aggregate or None while accumulating, whether micro-batches were summed)``."""
        if self.accumulation_steps == 1:
            return J, False
        if self._acc is None or self._micro == 0:
            self._acc = J.clone()
        else:
            self._acc.add_(J)
        if self._micro + 1 < self.accumulation_steps:
            return None, True
        return self._acc, True

    def accumulate_full(self, full: Any) -> Any:
        """Full per-task gradients summed over micro-batches, like :meth:`accumulate` (the
        sum so far, complete on the last micro-batch); ``full`` as is without accumulation."""
        if self.accumulation_steps == 1 or full is None:
            return full
        if self._micro == 0 or self._acc_full is None:
            self._acc_full = [[None if g is None else g.detach().clone() for g in row]
                              for row in full]
        else:
            for row_sum, row in zip(self._acc_full, full):
                for i, g in enumerate(row):
                    if g is not None:
                        row_sum[i] = g.detach().clone() if row_sum[i] is None \
                            else row_sum[i].add_(g)
        return self._acc_full

    def reduced(self, J: torch.Tensor) -> torch.Tensor:
        """``J`` averaged over the process group (the global batch's Jacobian)."""
        return self.reducer.mean_(J)

    def reduced_full(self, full_grads: Any) -> Any:
        if full_grads is not None:
            self.reducer.mean_nested_(full_grads)
        return full_grads

    def all_params(self) -> list[torch.Tensor]:
        return [p for _, p in self.shared] + [p for ps in self.task_params or [] for p in ps]

    def grads_finite(self) -> bool:
        params = [p for _, p in self.shared] + [p for ps in self.task_params or [] for p in ps]
        sums = [p.grad.sum() for p in params if p.grad is not None]
        return not sums or bool(torch.isfinite(torch.stack(sums).sum()))  # one host sync

    def mask_shared_grads(self) -> None:
        for p, frozen in zip(self.engine.params, self.engine.frozen):
            if p.grad is not None and frozen is not None:
                p.grad.masked_fill_(frozen, 0)

    def full_jacobian(self, full_grads: Any, like: torch.Tensor) -> torch.Tensor:
        """``[K, n_shared]`` per-task gradients on every shared coordinate (frozen included)."""
        sizes = self.engine.layout.full_sizes
        return torch.stack([
            torch.cat([g.reshape(-1).to(like.dtype) if g is not None
                       else torch.zeros(size, dtype=like.dtype, device=like.device)
                       for g, size in zip(row, sizes)])
            for row in full_grads])

    def trainable_index(self, device: torch.device) -> torch.Tensor:
        if self._flat_index is None or self._flat_index.device != device:
            self._flat_index = self.mask.flat_trainable_index().to(device)
        return self._flat_index

    def _clear_grads(self) -> None:
        for _, p in self.shared:
            p.grad = None
        for ps in self.task_params or []:
            for q in ps:
                q.grad = None

    def _nonfinite(self, message: str, losses: dict[str, float]) -> BackwardReport:
        self._clear_grads()
        self._micro = 0
        if self.nonfinite == "skip":
            report = BackwardReport(self.step, losses, skipped=True, reason=message)
            self.step += 1
            return report
        if "nonfinite='skip'" not in message:
            message += "; no update was applied (nonfinite='skip' skips such steps)"
        raise GradientError(f"step {self.step}: {message}")

    def _leave_to_scaler(self, losses: dict[str, float], message: str) -> BackwardReport:
        """A GradScaler step with inf/NaN gradients: make sure the scaler sees them, so that
        ``scaler.step`` skips the update and ``scaler.update`` lowers the scale."""
        self._clear_grads()
        self._micro = 0
        p = self.shared[0][1]
        p.grad = torch.full_like(p, math.inf)
        report = BackwardReport(self.step, losses, skipped=True,
                                reason=f"{message} (left to the GradScaler: step skipped)")
        self.step += 1
        return report

    def __repr__(self) -> str:
        return (f"MTLBackward(aggregator={self.aggregator!r}, path={self.path_name!r}, "
                f"shared={len(self.shared)} parameters, trainable={self.mask.trainable_count})")


def _resolve_probes(probes: Any, pm: PluginManager | None) -> dict[str, ConflictProbe]:
    if isinstance(probes, (str, ConflictProbe)):
        probes = [probes]
    if isinstance(probes, Mapping):
        return {name: spec if isinstance(spec, ConflictProbe) else
                plugin("probe", {"name": name, **dict(spec or {})}, ConflictProbe, pm)
                for name, spec in probes.items()}
    out: dict[str, ConflictProbe] = {}
    for spec in probes:
        probe = plugin("probe", spec, ConflictProbe, pm)
        out[registered_name("probe", spec, probe, pm)] = probe
    return out


def mtl_backward(losses: Any, shared_params: nn.Module | Iterable[Any],
                 aggregator: Any = "mean", **options: Any) -> BackwardReport:
    """One stateless call: aggregate ``losses``' gradients on ``shared_params`` into ``.grad``.

    A fresh :class:`MTLBackward` each call (stateful aggregators start over each time; keep an
    ``MTLBackward`` for those). ``options`` are its keyword arguments; ``features=z`` selects
    the representation path.
    """
    features = options.pop("features", None)
    if isinstance(features, bool):
        raise ConfigError("mtl_backward(features=...) takes the representation tensor itself")
    engine = MTLBackward(shared_params, aggregator, features=features is not None, **options)
    try:
        return engine.backward(losses, features=features)
    finally:
        engine.close()


__all__ = ["BackwardReport", "MTLBackward", "mtl_backward"]
