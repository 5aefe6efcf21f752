"""The training loop: one forward, per-task gradients, probes, aggregation, one optimizer step.

::

    batch -> model -> {task: output} -> losses [K]
          -> J = d losses / d shared[trainable]        (K x n; heads get their own gradient)
          -> probes.observe(J, full gradients)         (every probe_every steps)
          -> d = aggregator(J, losses, step, ...)      (n)
          -> scatter d into shared .grad (frozen coordinates: 0) -> optimizer.step()
          -> restore frozen coordinates (bit-identical under momentum / AdamW weight decay)

The gradient path is fixed at set-up (:func:`gradient_path`, ``docs/jacobian-engine.md``):
loss-level weightings (``requires == "losses"``, mean included) skip the Jacobian: one backward
of ``sum_k w_k L_k``; ``GramianWeighting`` methods only ever get ``G`` and return ``w``
(``.grad = J^T w``); ``gramian`` mode never forms ``J``; ``representation`` mode (or an
aggregator with ``gradient_level = "representation"``) aggregates gradients w.r.t. the shared
representation. Evaluation on val and test after every ``eval_every`` epochs; metrics are
accumulated over the whole split. Deterministic for a seed on CPU.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from mtlkit.aggregation import Aggregator
from mtlkit.benchmarks import Benchmark, InMemoryDataset
from mtlkit.config import TrainConfig
from mtlkit.engine import MTLBackward
from mtlkit.engine.paths import choose_path
from mtlkit.errors import ConfigError
from mtlkit.jacobian import JacobianEngine
from mtlkit.loggers import ExperimentLogger, as_logger, make_loggers
from mtlkit.masking import FrozenGuard, MaskContext, ParameterMask
from mtlkit.models import MultiTaskModel
from mtlkit.plugins import PluginManager, get_plugin_manager
from mtlkit.progress import Progress
from mtlkit.results import load_checkpoint, save_checkpoint, write_csv, write_json
from mtlkit.run_records import NumericalWarning, RunRecords

EpochCallback = Callable[[dict[str, Any], "Trainer"], None]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer(RunRecords):
    """Builds everything a config names and trains it."""

    def __init__(
        self,
        config: TrainConfig,
        out: str | Path | None = None,
        *,
        plugins: PluginManager | None = None,
        progress: bool | None = None,
        on_epoch_end: EpochCallback | None = None,
        model_transform: Callable[[nn.Module], nn.Module] | None = None,
        benchmark: Benchmark | None = None,
        loggers: Iterable[Any] = (),
    ) -> None:
        self.config = config
        #: a benchmark object instead of a registered name (e.g. mtlkit.fit's own model)
        self._given_benchmark = benchmark
        self._given_loggers = [as_logger(obj) for obj in loggers]
        #: applied to the benchmark's model before training (e.g. Recon's layer branching)
        self.model_transform = model_transform
        self.out = Path(out).resolve() if out is not None else None
        self.pm = plugins or get_plugin_manager()
        self.progress = Progress(progress, every=config.log_every)
        self.on_epoch_end = on_epoch_end
        self._setup()

    # -- construction -----------------------------------------------------------------------

    def _setup(self) -> None:
        cfg = self.config
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.device = torch.device(_resolve_device(cfg.device))
        seed_everything(cfg.seed)
        bench_params = {"seed": cfg.seed, "data_root": cfg.data_root, **cfg.benchmark_params}
        self.benchmark: Benchmark = (
            self._given_benchmark if self._given_benchmark is not None
            else self.pm.create("benchmark", cfg.benchmark, **bench_params))
        all_tasks = {t.name: t for t in self.benchmark.tasks}
        names = cfg.tasks or list(all_tasks)
        for name in names:
            if name not in all_tasks:
                raise ConfigError(f"invalid tasks entry {name!r}: benchmark "
                                  f"{cfg.benchmark!r} has tasks {', '.join(all_tasks)}")
        self.tasks = [all_tasks[n] for n in names]
        self.task_names = names
        defaults = self.benchmark.defaults
        self.epochs = cfg.epochs or defaults.epochs
        self.batch_size = cfg.batch_size or defaults.batch_size
        self.lr = cfg.lr or defaults.lr
        self.optimizer_name = cfg.optimizer or defaults.optimizer
        self.weight_decay = (cfg.weight_decay if cfg.weight_decay is not None
                             else defaults.weight_decay)

        self.splits = self.benchmark.splits()
        torch.manual_seed(cfg.seed)
        model = self.benchmark.build_model(names)
        if cfg.backbone_weights:  # before any transform: the weights fit the plain encoder
            from mtlkit.pretrained import load_backbone_weights
            load_backbone_weights(model, cfg.backbone_weights)
        if self.model_transform is not None:
            model = self.model_transform(model)
        self.model = model.to(self.device)
        self.shared = self.model.shared_named_parameters()
        if not self.shared:
            raise ConfigError("the model has no shared parameters to train")
        # an own model does not declare its heads: the engine finds them from the graph
        self.task_params = ([[p for _, p in self.model.task_named_parameters(t)] for t in names]
                            if isinstance(self.model, MultiTaskModel) else None)

        self.aggregator = self.pm.create("aggregator", cfg.aggregator, **cfg.aggregator_params)
        self.mask_strategy = self.pm.create("mask", cfg.mask, **cfg.mask_kwargs())
        self.probes = {name: self.pm.create("probe", name, **cfg.probe_params.get(name, {}))
                       for name in cfg.probes}
        self.agg_generator = torch.Generator(device=self.device).manual_seed(cfg.seed + 1)

        mask = self._select_mask(step=0)
        self.gradient_path = gradient_path(cfg, self.aggregator, self.model)
        self.aggregator.configure(len(names))  # e.g. UW creates one log-variance per task
        self.optimizer = self._make_optimizer()
        #: float16 autocast needs loss scaling; bfloat16 has float32's range and needs none
        self.scaler = (torch.amp.GradScaler(self.device.type) if cfg.amp == "fp16" else None)
        self.steps_per_epoch = self._steps_per_epoch()
        self.total_steps = self.epochs * self.steps_per_epoch
        if cfg.max_steps is not None:
            self.total_steps = min(self.total_steps, cfg.max_steps)
        #: the step itself: per-task gradients, mask, probes, aggregation (the public engine)
        self.mtl = MTLBackward(
            self.shared, self.aggregator, mask=mask, probes=self.probes,
            optimizer=self.optimizer, features=self.gradient_path == "representation",
            tasks=names, task_params=self.task_params, scaler=self.scaler,
            accumulation_steps=cfg.accumulation_steps,
            jacobian="loop" if cfg.jacobian == "representation" else cfg.jacobian,
            mask_point=cfg.mask_point, nonfinite=cfg.nonfinite, probe_every=cfg.probe_every,
            seed=cfg.seed, total_steps=self.total_steps, model=self.model, plugins=self.pm)
        self.agg_generator = self.mtl.generator
        self.loggers: list[ExperimentLogger] = self._given_loggers + make_loggers(
            cfg.log, self.out, cfg.to_dict())
        self.step = 0
        self.epoch = 0
        self.history: list[dict[str, Any]] = []
        self.step_rows: list[dict[str, Any]] = []
        self.skipped_steps = 0
        self.wall_s = 0.0

    def _make_optimizer(self) -> torch.optim.Optimizer:
        params = [p for p in self.model.parameters() if p.requires_grad]
        params += list(self.aggregator.parameters())
        name, lr, wd = self.optimizer_name, self.lr, self.weight_decay
        if name == "sgd":
            return torch.optim.SGD(params, lr=lr, momentum=self.config.momentum, weight_decay=wd)
        if name == "adam":
            return torch.optim.Adam(params, lr=lr, weight_decay=wd)
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)

    def _select_mask(self, step: int) -> ParameterMask:
        shared = dict(self.shared)
        # owning modules let strategies tell norm scales from biases (and transposed convs)
        owners = {f"{mod_name}.{p_name}" if mod_name else p_name: module
                  for mod_name, module in self.model.named_modules()
                  for p_name, _ in module.named_parameters(recurse=False)}
        ctx = MaskContext(generator=torch.Generator().manual_seed(self.config.seed + 2 + step),
                          gradient_magnitudes=lambda n: self._gradient_magnitudes(n, step),
                          step=step, modules={n: owners[n] for n in shared if n in owners})
        selection = self.mask_strategy.select(shared, ctx)
        return ParameterMask.from_selection(shared, selection)

    def set_mask(self, mask: ParameterMask) -> None:
        """Make ``mask`` the trainable set (engine layout, frozen-value guard, caches)."""
        self.mtl.set_mask(mask)

    @property
    def mask(self) -> ParameterMask:
        return self.mtl.mask

    @property
    def guard(self) -> FrozenGuard:
        return self.mtl.guard

    @property
    def engine(self) -> JacobianEngine:
        """The Jacobian engine behind :attr:`mtl` (layout, ``n``)."""
        return self.mtl.engine

    def _gradient_magnitudes(self, num_batches: int, step: int = 0) -> dict[str, torch.Tensor]:
        """Accumulated |grad| of the mean task loss over ``num_batches`` training batches
        (different batches at each re-selection step). Side-effect free: BatchNorm running
        statistics and the global RNG (dropout) are restored, so selecting a mask does not
        change the training trajectory by itself."""
        totals = {n: torch.zeros_like(p) for n, p in self.shared}
        batches = self._train_batches(
            torch.Generator().manual_seed(self.config.seed + 3 + 7919 * step))
        buffers = {n: b.clone() for n, b in self.model.named_buffers()}
        rng = torch.get_rng_state()
        self.model.train()
        for _, (x, y) in zip(range(num_batches), batches):
            losses = self._losses(self.model(x), y)
            grads = torch.autograd.grad(losses.mean(), [p for _, p in self.shared],
                                        allow_unused=True)
            for (n, _), g in zip(self.shared, grads):
                if g is not None:
                    totals[n] += g.abs()
        with torch.no_grad():
            for n, b in self.model.named_buffers():
                b.copy_(buffers[n])
        torch.set_rng_state(rng)
        return totals

    # -- data -------------------------------------------------------------------------------

    def _loader(self, dataset, *, shuffle: bool, generator: torch.Generator | None,
                batch_size: int) -> Iterator[tuple[torch.Tensor, dict[str, torch.Tensor]]]:
        if isinstance(dataset, InMemoryDataset):
            yield from dataset.batches(batch_size, shuffle=shuffle, generator=generator)
            return
        if isinstance(dataset, DataLoader):  # a caller's own loader: its order, its batches
            for batch in dataset:
                if not (isinstance(batch, (tuple, list)) and len(batch) == 2
                        and isinstance(batch[1], Mapping)):
                    raise ConfigError("each batch of a DataLoader must be (x, {task: target}); "
                                      f"got {type(batch).__name__}")
                yield batch[0], dict(batch[1])
            return
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=shuffle,
                            generator=generator, num_workers=self.config.workers)
        yield from loader

    def _train_batches(self, generator: torch.Generator):
        for x, y in self._loader(self.splits.train, shuffle=True, generator=generator,
                                 batch_size=self.batch_size):
            yield x.to(self.device), {t: v.to(self.device) for t, v in y.items()
                                      if t in self.task_names}

    def _steps_per_epoch(self) -> int:
        if isinstance(self.splits.train, DataLoader):
            return len(self.splits.train)
        return math.ceil(len(self.splits.train) / self.batch_size)

    def _task_losses(self, outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]
                     ) -> dict[str, torch.Tensor]:
        return {task.name: task.head.loss(outputs[task.name], targets[task.name])
                for task in self.tasks}

    def _losses(self, outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]
                ) -> torch.Tensor:
        return torch.stack(list(self._task_losses(outputs, targets).values()))

    # -- one step ---------------------------------------------------------------------------

    def train_step(self, x: torch.Tensor, y: dict[str, torch.Tensor]) -> dict[str, float] | None:
        """One optimizer step; returns per-task losses, or ``None`` if the step was skipped.

        With ``accumulation_steps = N`` the batch goes through the model in N equal pieces
        (less activation memory); the engine aggregates the summed per-task gradients once.
        """
        if not self.model.training:  # train() walks every module: ~0.15 ms a step otherwise
            self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        self._set_step_lr()
        self.mtl.step = self.step
        pieces = self._micro_batches(x, y)
        totals: dict[str, float] = {}
        for px, py in pieces:
            report = self._backward(px, py)
            if report.skipped:
                self.skipped_steps += 1
                self._log_step(report)
                self.mtl.step = self.step  # the engine counted the skipped step
                if self.scaler is not None:  # the scaler skips the update and lowers its scale
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
                return None
            for t, v in report.losses.items():
                totals[t] = totals.get(t, 0.0) + v / len(pieces)
        if report.probes:
            self.step_rows.append({"step": self.step, "epoch": self.epoch, **report.probes})
        self._log_step(report, totals)
        if self.config.grad_clip is not None:
            if self.scaler is not None:
                self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.optimizer.param_groups[0]["params"],
                                           self.config.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)  # the engine's step hook still runs after it
            self.scaler.update()
        else:
            self.optimizer.step()  # the engine's step hook restores frozen coordinates
        return totals

    def _backward(self, x: torch.Tensor, y: dict[str, torch.Tensor]):
        """Forward one (micro-)batch under the configured autocast and hand its K losses to
        the engine."""
        amp = self.config.amp
        with torch.autocast(self.device.type, dtype=torch.bfloat16 if amp == "bf16"
                            else torch.float16, enabled=amp != "off"):
            z = None
            if self.gradient_path == "representation":
                z = self.model.represent(x)
                outputs = self.model.heads_forward(z)
            else:
                outputs = self.model(x)
            # the K scalar losses, not their stack: each task is differentiated through its
            # own head only
            losses = self._task_losses(outputs, y)
        after = None
        if self.aggregator.needs_losses_after:
            # FAMO's update compares the same batch's losses before and after the step
            def after() -> dict[str, torch.Tensor]:
                return self._task_losses(self.model(x), y)
        return self.mtl.backward(losses, features=z, losses_after=after, epoch=self.epoch,
                                 progress=self.step / max(self.total_steps, 1))

    def _micro_batches(self, x: torch.Tensor, y: dict[str, torch.Tensor]) -> list[tuple]:
        n = self.config.accumulation_steps
        if n == 1:
            return [(x, y)]
        if len(x) < n:
            raise ConfigError(f"invalid accumulation_steps={n}: a batch has only {len(x)} "
                              "examples to split")
        xs = torch.tensor_split(x, n)
        ys = {t: torch.tensor_split(v, n) for t, v in y.items()}
        return [(xs[i], {t: v[i] for t, v in ys.items()}) for i in range(n)]

    def _log_step(self, report: Any, losses: Mapping[str, float] | None = None) -> None:
        if not self.loggers or not (report.probes or report.skipped
                                    or self.step % self.config.log_every == 0):
            return
        record: dict[str, float] = {f"train/loss/{t}": v
                                    for t, v in (losses or report.losses).items()}
        record.update({f"probe/{k}": v for k, v in report.probes.items()})
        if report.weights is not None:
            record.update({f"weights/{t}": float(w)
                           for t, w in zip(self.task_names, report.weights.tolist())})
        record["train/skipped_steps"] = self.skipped_steps
        for logger in self.loggers:
            logger.log(record, self.step)

    def _set_step_lr(self) -> None:
        """Warm-up and cosine schedules, from the step alone (resuming needs no state)."""
        cfg = self.config
        if not cfg.warmup_steps and cfg.lr_schedule in (None, "constant"):
            return
        factor = 1.0
        if cfg.lr_schedule == "cosine":
            progress = min(self.step / max(self.total_steps, 1), 1.0)
            factor = 0.5 * (1.0 + math.cos(math.pi * progress))
        if cfg.warmup_steps and self.step < cfg.warmup_steps:
            factor *= (self.step + 1) / cfg.warmup_steps
        for group in self.optimizer.param_groups:
            group["lr"] = group.setdefault("initial_lr", group["lr"]) * factor * \
                group.get("epoch_factor", 1.0)

    # -- evaluation -------------------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self, split: str) -> dict[str, dict[str, float]]:
        dataset = getattr(self.splits, split)
        self.model.eval()
        accs = {t.name: t.head.metrics() for t in self.tasks}
        batch_size = self.benchmark.defaults.eval_batch_size or max(self.batch_size, 256)
        for x, y in self._loader(dataset, shuffle=False, generator=None,
                                 batch_size=batch_size):
            outputs = self.model(x.to(self.device))
            for t in self.task_names:
                accs[t].update(outputs[t], y[t].to(self.device))
        return {t: acc.compute() for t, acc in accs.items()}

    # -- the loop ---------------------------------------------------------------------------

    def fit(self, *, resume: bool = False) -> dict[str, Any]:
        if resume and self.out is not None and (self.out / "checkpoint.pt").is_file():
            self.load_state(load_checkpoint(self.out / "checkpoint.pt"))
        start = time.perf_counter() - self.wall_s
        self.progress.start(self.step)
        reselect = self.mask_strategy.reselect_every
        while self.epoch < self.epochs and self.step < self.total_steps:
            first_step, skipped_before = self.step, self.skipped_steps
            self._set_epoch_lr()
            gen = torch.Generator().manual_seed(self.config.seed * 100_003 + self.epoch)
            sums = dict.fromkeys(self.task_names, 0.0)
            n = 0
            for x, y in self._train_batches(gen):
                if self.step >= self.total_steps:
                    break
                if reselect and self.step > 0 and self.step % reselect == 0:
                    self._reselect()
                losses = self.train_step(x, y)
                self.step += 1
                if losses is not None:
                    n += 1
                    for t, v in losses.items():
                        sums[t] += v
                if self.progress.enabled:  # no per-step string building when nobody reads it
                    self.progress.step(self.step, self.total_steps, self._status(sums, n))
            self.epoch += 1
            record: dict[str, Any] = {"epoch": self.epoch, "step": self.step,
                                      "skipped_steps": self.skipped_steps - skipped_before}
            record.update({f"train_loss.{t}": sums[t] / max(n, 1) for t in self.task_names})
            last = self.epoch >= self.epochs or self.step >= self.total_steps
            if self.epoch % self.config.eval_every == 0 or last:
                for split in ("val", "test"):
                    for t, metrics in self.evaluate(split).items():
                        record.update({f"{split}.{t}.{m}": v for m, v in metrics.items()})
            record.update(self._conflict_summary(prefix="conflict."))
            self.history.append(record)
            if self.progress.enabled:
                self.progress.epoch(self.step, self.total_steps,
                                    self._status(sums, n, epoch=self.epoch))
            if self.loggers:
                epoch_record = {k.replace(".", "/", 2): v for k, v in record.items()
                                if k not in ("epoch", "step")}
                for logger in self.loggers:
                    logger.log(epoch_record, self.step)
            self.wall_s = time.perf_counter() - start
            if self.out is not None:
                write_csv(self.out / "epochs.csv", self.history)
                if self.step_rows:
                    write_csv(self.out / "steps.csv", self.step_rows)
                if self.config.checkpoint:
                    save_checkpoint(self.out / "checkpoint.pt", self.state())
            self._check_skipped(record["skipped_steps"], self.step - first_step)
            if self.on_epoch_end is not None:
                self.on_epoch_end(record, self)
        self.progress.done()
        self.wall_s = time.perf_counter() - start
        for logger in self.loggers:
            logger.close()
        results = self.results()
        if results["nonfinite_metrics"]:
            import warnings

            warnings.warn(f"non-finite evaluation metrics {', '.join(results['nonfinite_metrics'])}"
                          " (written as null in results.json, listed under nonfinite_metrics)",
                          NumericalWarning, stacklevel=2)
        if self.out is not None:
            write_json(self.out / "results.json", results)
        return results

    def _status(self, sums: dict[str, float], n: int, epoch: int | None = None) -> str:
        epoch = self.epoch + 1 if epoch is None else epoch
        return (f"epoch {epoch}/{self.epochs} step {self.step}/{self.total_steps} "
                + " ".join(f"{t}={sums[t] / max(n, 1):.4f}" for t in self.task_names))

    def _set_epoch_lr(self) -> None:
        """The benchmark's step decay, from the epoch alone (so resuming needs no state)."""
        d = self.benchmark.defaults
        if self.config.lr_schedule is not None or not d.lr_milestones:
            return  # an explicit schedule replaces the benchmark's step decay
        factor = d.lr_gamma ** sum(self.epoch >= m for m in d.lr_milestones)
        for group in self.optimizer.param_groups:
            group["epoch_factor"] = factor  # warm-up (per step) multiplies it
            group["lr"] = group.setdefault("initial_lr", group["lr"]) * factor

    def _reselect(self) -> None:
        self.set_mask(self._select_mask(step=self.step))


def gradient_path(config: TrainConfig, aggregator: Aggregator, model: nn.Module) -> str:
    """Which gradient path a run takes (:func:`mtlkit.engine.paths.choose_path`), and whether
    the model can serve the representation path; one error naming both sides otherwise."""
    path = choose_path(aggregator, "loop" if config.jacobian == "representation"
                       else config.jacobian, config.jacobian == "representation",
                       config.aggregator)
    if path == "representation" and not isinstance(model, MultiTaskModel):
        raise ConfigError(
            f"jacobian='representation' (needed by aggregator {config.aggregator!r}) needs a "
            f"model with represent() and heads_forward() (a MultiTaskModel); "
            f"{type(model).__name__} is not one")
    return path


def _resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("invalid device='cuda': no CUDA device is available; use cpu or auto")
    return name


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
