"""``mtlkit bench aggregators``: aggregator latency and full training-step cost.

Three measurements, all in one process so that ratios compare like with like on a noisy machine:

1. **Aggregator latency**: ``agg(J)`` on a random ``[K, n]`` float32 matrix for every registered
   aggregator, next to the cost of ``J J^T`` plus one combination ``w^T J`` (what any
   Gramian-based method must at least do).
2. **Training steps**: the real :meth:`mtlkit.trainer.Trainer.train_step` (forward, per-task
   gradients, aggregation, SGD step) on the Multi-MNIST LeNet (K = 2) and on a 784-1024-256 MLP
   encoder (1.07M parameters) with K linear heads, batch 256, next to two floors measured with
   the same model: one backward of the summed loss, and K ``torch.autograd.grad`` calls (the
   "K-backward floor": what any method needing K task gradients must pay).
3. **Density**: the MLP step at a few trainable fractions (random per-neuron masks built with
   :meth:`ParameterMask.from_selection`), showing that sparse training makes aggregation cheaper.

Timing: variants are interleaved round-robin; each round times ``inner`` steps per variant and a
variant's ratio is the median over rounds of (its time / the floor's time in the same round).
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import attrs
import torch
from torch import nn

from mtlkit.aggregation import Aggregator, GramianWeighting, gramian_matrix
from mtlkit.benchmarks import Benchmark, InMemoryDataset, Splits, Task, TrainingDefaults
from mtlkit.config import TrainConfig
from mtlkit.errors import ConfigError, MtlkitError
from mtlkit.masking import ParameterMask
from mtlkit.models import MultiTaskModel
from mtlkit.plugins import PluginManager, get_plugin_manager

BATCH = 256
#: name of the engine's own reference method (not a registered plugin)
REFERENCE = "ref_gramian_mean"
PARTS = ("latency", "steps", "density", "memory")


class _GramianMean(GramianWeighting):
    """Equal weights through the Gramian path: the engine's own cost floor for such methods."""

    def weights(self, G: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        K = G.shape[0]
        return torch.full((K,), 1.0 / K, dtype=G.dtype, device=G.device)


@attrs.define
class Options:
    methods: list[str] | None = None
    ks: list[int] = attrs.field(factory=lambda: [2, 4, 10, 40])
    ns: list[int] = attrs.field(factory=lambda: [100_000, 1_000_000])
    step_ks: list[int] = attrs.field(factory=lambda: [2, 4, 10])
    densities: list[float] = attrs.field(factory=lambda: [1.0, 0.3, 0.1])
    rounds: int = 7
    inner: int = 3
    mlp_sizes: tuple[int, int, int] = (784, 1024, 256)
    batch: int = BATCH
    workloads: list[str] = attrs.field(factory=lambda: ["lenet", "mlp"])
    threads: int | None = 2
    parts: list[str] = attrs.field(factory=lambda: list(PARTS))

    @classmethod
    def quick(cls, **overrides: Any) -> Options:
        base = {"ks": [2, 10], "ns": [100_000], "step_ks": [2, 4], "densities": [1.0, 0.3],
                "rounds": 3, "inner": 2, "mlp_sizes": (784, 256, 64), "batch": 64}
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)


# -- plugins facade: the real Trainer, a synthetic benchmark --------------------------------


class _Synthetic(Benchmark):
    """Random inputs and labels with the workload's model; one training batch."""

    name: ClassVar[str] = "bench"
    defaults: ClassVar[TrainingDefaults] = TrainingDefaults(optimizer="sgd", lr=1e-4,
                                                            batch_size=BATCH, epochs=1)

    def __init__(self, workload: str, K: int, sizes: tuple[int, int, int], batch: int,
                 **_ignored: Any) -> None:
        from mtlkit_plugins.heads.classification import Classification

        self.workload, self.K, self.sizes, self.batch = workload, K, sizes, batch
        hidden = 50 if workload == "lenet" else None
        self._tasks = [Task(f"t{k}", Classification(num_classes=10, hidden=hidden))
                       for k in range(K)]

    @property
    def tasks(self) -> list[Task]:
        return self._tasks

    def splits(self) -> Splits:
        g = torch.Generator().manual_seed(0)
        shape = (self.batch, 1, 28, 28) if self.workload == "lenet" else (self.batch,
                                                                          self.sizes[0])
        x = torch.randn(shape, generator=g)
        ys = {t.name: torch.randint(0, 10, (self.batch,), generator=g) for t in self._tasks}
        data = InMemoryDataset(x, ys)
        return Splits(data, data, data)

    def build_model(self, tasks: list[str] | None = None) -> MultiTaskModel:
        if self.workload == "lenet":
            from mtlkit_plugins.backbones.lenet import LeNetEncoder

            encoder: nn.Module = LeNetEncoder(in_channels=1, out_features=50)
            width = 50
        else:
            a, b, c = self.sizes
            encoder = nn.Sequential(nn.Linear(a, b), nn.ReLU(), nn.Linear(b, c), nn.ReLU())
            width = c
        heads = {t.name: t.head.build(width) for t in self._tasks
                 if tasks is None or t.name in tasks}
        return MultiTaskModel(encoder, heads)


class _Plugins:
    """Delegates to the real plugin manager, adding the synthetic benchmark and reference."""

    def __init__(self, pm: PluginManager, bench: _Synthetic) -> None:
        self.pm, self.bench = pm, bench

    def create(self, kind: str, name: str, **params: Any) -> Any:
        if kind == "benchmark":
            return self.bench
        if kind == "aggregator" and name == REFERENCE:
            return _GramianMean()
        return self.pm.create(kind, name, **params)


def make_trainer(workload: str, K: int, method: str, jacobian: str, opts: Options,
                 pm: PluginManager | None = None):
    from mtlkit.trainer import Trainer

    bench = _Synthetic(workload, K, opts.mlp_sizes, opts.batch)
    cfg = TrainConfig(benchmark="bench", aggregator=method, probes=[], jacobian=jacobian,
                      optimizer="sgd", lr=1e-4, batch_size=opts.batch, epochs=1,
                      checkpoint=False, threads=opts.threads)
    return Trainer(cfg, None, plugins=_Plugins(pm or get_plugin_manager(), bench),  # type: ignore[arg-type]
                   progress=False)


def random_neuron_mask(params: dict[str, nn.Parameter], density: float,
                       generator: torch.Generator) -> ParameterMask:
    """A random per-neuron mask: each output row keeps ``round(density * fan_in)`` weights."""
    selection = {}
    for name, p in params.items():
        if p.ndim < 2 or density >= 1:
            continue  # biases and dense runs train fully
        rows = p.reshape(p.shape[0], -1)
        keep = max(1, round(density * rows.shape[1]))
        order = torch.rand(rows.shape, generator=generator).argsort(dim=1)
        m = torch.zeros(rows.shape, dtype=torch.bool)
        m.scatter_(1, order[:, :keep], True)
        selection[name] = m.reshape(p.shape)
    return ParameterMask.from_selection(params, selection)




# -- floors -----------------------------------------------------------------------------------


def task_losses(trainer, outputs, y) -> list[torch.Tensor]:
    """The K losses as separate scalars: task k's backward then reaches head k only."""
    return [task.head.loss(outputs[task.name], y[task.name]) for task in trainer.tasks]


def floor_steps(trainer) -> dict[str, Callable[[], None]]:
    """The reference steps, on the trainer's own model, batch and optimizer.

    ``k_backward`` is the honest K-backward floor: K ``torch.autograd.grad`` calls, each on one
    task's own loss w.r.t. the shared parameters and that task's head. ``k_backward_stacked``
    does the same on ``torch.stack(losses)[k]`` (what the trainer's ``loop`` path does): autograd
    does not prune zero gradients, so each call also back-propagates zeros through the other
    K - 1 heads, a cost that grows as K^2 times a head's backward.
    """
    x, y = _batch(trainer)
    model, opt = trainer.model, trainer.optimizer
    shared = [p for _, p in trainer.shared]

    def one_backward() -> None:
        opt.zero_grad(set_to_none=True)
        trainer._losses(model(x), y).sum().backward()
        opt.step()

    def k_calls(losses) -> None:
        K = len(losses)
        for k in range(K):
            own = trainer.task_params[k]
            grads = torch.autograd.grad(losses[k], [*shared, *own], retain_graph=k < K - 1)
            for p, g in zip(own, grads[len(shared):]):
                p.grad = g
        # the last task's gradients stand in for an update: no copy, no aggregation
        for p, g in zip(shared, grads[: len(shared)]):
            p.grad = g
        opt.step()

    def k_backward() -> None:
        opt.zero_grad(set_to_none=True)
        k_calls(task_losses(trainer, model(x), y))

    def k_backward_stacked() -> None:
        opt.zero_grad(set_to_none=True)
        k_calls(trainer._losses(model(x), y))

    return {"one_backward": one_backward, "k_backward": k_backward,
            "k_backward_stacked": k_backward_stacked}


def own_loop_step(trainer) -> Callable[[], None]:
    """The Trainer's step written as a user's plain loop: forward, the K losses,
    ``MTLBackward.backward``, ``optimizer.step``. Its ratio to the Trainer's ``loop`` row is
    the Trainer's own overhead (target: at most 1.02x either way)."""
    from mtlkit.engine import MTLBackward

    x, y = _batch(trainer)
    model, opt = trainer.model, trainer.optimizer
    trainer.mtl.close()  # one step hook on the optimizer: this engine's
    mtl = MTLBackward(trainer.shared, trainer.aggregator, optimizer=opt,
                      task_params=trainer.task_params, tasks=trainer.task_names)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        mtl.backward(task_losses(trainer, model(x), y))
        opt.step()

    return step


def autogram_step(trainer, mask: ParameterMask | None = None) -> Callable[[], None]:
    """A Gramian-weighting step through :class:`mtlkit.engine.autogram.AutogramEngine`.

    Forward, ``G`` layer by layer (J never formed), ``w = aggregator.weights(G)``,
    ``.grad = w^T J`` per layer, SGD step: the path the engine offers Gramian methods.
    """
    from mtlkit.engine.autogram import AutogramEngine

    x, y = _batch(trainer)
    model, opt, agg = trainer.model, trainer.optimizer, trainer.aggregator
    engine = AutogramEngine(model, trainer.shared, masks=mask.masks if mask else None)
    heads = trainer.task_params

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        losses = task_losses(trainer, model(x), y)
        G = engine.gramian(losses, heads)
        ctx = {"losses": torch.stack(losses).detach(), "step": 0, "epoch": 0,
               "task_names": trainer.task_names, "generator": trainer.agg_generator,
               "gramian": G}
        engine.write_combination(agg.weights(G, ctx))
        opt.step()

    return step


#: mtlkit method -> TorchJD (aggregator, weighting) class names, for the side-by-side rows
TORCHJD = {REFERENCE: ("Mean", "MeanWeighting"), "upgrad": ("UPGrad", "UPGradWeighting"),
           "mgda": ("MGDA", "MGDAWeighting"), "imtl_g": ("IMTLG", "IMTLGWeighting")}


def torchjd_available() -> bool:
    try:
        import torchjd  # noqa: F401
    except ImportError:
        return False
    return True


def torchjd_steps(trainer, method: str) -> dict[str, Callable[[], None]]:
    """TorchJD's own steps on the same model and batch (empty without the ``torchjd`` extra).

    ``autojac``: ``mtl_backward`` (Jacobian of the losses w.r.t. the shared parameters, heads
    get their task gradient) then ``jac_to_grad`` with the aggregator. ``autogram``: its
    ``Engine`` on the encoder computes the Gramian, the weighting gives ``w``, and one
    backward of ``w^T losses`` writes every ``.grad`` (heads get ``w_k grad L_k`` there).
    """
    if method not in TORCHJD or not torchjd_available():
        return {}
    import torchjd.aggregation as tja
    from torchjd.autogram import Engine
    from torchjd.autojac import jac_to_grad, mtl_backward

    agg_name, weighting_name = TORCHJD[method]
    aggregator, weighting = getattr(tja, agg_name)(), getattr(tja, weighting_name)()
    x, y = _batch(trainer)
    model, opt = trainer.model, trainer.optimizer
    shared = [p for _, p in trainer.shared]
    engine = Engine(model.encoder, batch_dim=None)

    def autojac() -> None:
        opt.zero_grad(set_to_none=True)
        z = model.represent(x)
        losses = task_losses(trainer, model.heads_forward(z), y)
        mtl_backward(losses, features=z, tasks_params=trainer.task_params, shared_params=shared)
        jac_to_grad(shared, aggregator)
        opt.step()

    def autogram() -> None:
        opt.zero_grad(set_to_none=True)
        losses = torch.stack(task_losses(trainer, model(x), y))
        losses.backward(weighting(engine.compute_gramian(losses)))
        opt.step()

    return {"torchjd autojac": autojac, "torchjd autogram": autogram}


def _batch(trainer):
    return next(iter(trainer._train_batches(torch.Generator().manual_seed(0))))


def time_variants(variants: dict[str, Callable[[], None]], floor: str, rounds: int,
                  inner: int) -> dict[str, dict[str, float]]:
    """Interleaved timing: per variant the median wall ms and median paired ratio to ``floor``.

    Also recorded: the best round (``best_ms``, ``best_ratio`` = best / floor's best) and
    process CPU time (``cpu_ratio``). On a machine shared with other jobs these measure the
    work done rather than the time slices obtained, so they are the steadier figures.
    """
    for fn in variants.values():  # warm-up (allocator, lazy init, first-call overheads)
        fn()
        fn()
    wall: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            c0, t0 = time.process_time(), time.perf_counter()
            for _ in range(inner):
                fn()
            wall[name].append((time.perf_counter() - t0) / inner)
            cpu[name].append((time.process_time() - c0) / inner)
    out = {}
    for name in variants:
        ratios = [t / f for t, f in zip(wall[name], wall[floor])]
        cpu_ratios = [t / f for t, f in zip(cpu[name], cpu[floor]) if f > 0]
        out[name] = {"ms": statistics.median(wall[name]) * 1e3,
                     "ratio": statistics.median(ratios),
                     # best-of-rounds: the least disturbed estimate on a contended machine
                     "best_ms": min(wall[name]) * 1e3,
                     "best_ratio": min(wall[name]) / min(wall[floor]),
                     "cpu_ms": statistics.median(cpu[name]) * 1e3,
                     "cpu_ratio": statistics.median(cpu_ratios) if cpu_ratios else math.nan}
    return out


# -- the three measurements -------------------------------------------------------------------


def method_info(pm: PluginManager, name: str) -> dict[str, Any]:
    agg: Aggregator = _GramianMean() if name == REFERENCE else pm.create("aggregator", name)
    return {"requires": agg.requires, "gradient_level": getattr(agg, "gradient_level",
                                                                "parameters"),
            "gramian_weighting": isinstance(agg, GramianWeighting),
            "iterative": agg.iterative_solver}


def _gramian_floor(J: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    gramian_matrix(J)
    return torch.mv(J.t(), w)


def aggregator_latency(methods: Sequence[str], opts: Options, pm: PluginManager,
                       emit: Callable[[str], None]) -> list[dict[str, Any]]:
    rows = []
    for K in opts.ks:
        for n in opts.ns:
            J = torch.randn(K, n, generator=torch.Generator().manual_seed(K * 7 + n))
            context = {"losses": torch.rand(K) + 0.5, "step": 0, "epoch": 0,
                       "task_names": [f"t{k}" for k in range(K)],
                       "generator": torch.Generator().manual_seed(0)}
            w = torch.full((K,), 1.0 / K)
            variants: dict[str, Callable[[], None]] = {
                "gramian+combination": lambda J=J, w=w: _gramian_floor(J, w)}
            for name in methods:
                agg = _GramianMean() if name == REFERENCE else pm.create("aggregator", name)
                variants[name] = lambda agg=agg, J=J, ctx=context: agg(J, **ctx)
            inner = max(1, min(10, 2_000_000 // (K * n)))
            res = time_variants(variants, "gramian+combination", opts.rounds, inner)
            for name, r in res.items():
                rows.append({"K": K, "n": n, "method": name, **r})
    _table(emit, "Aggregator latency (best-of-rounds ms; ratio to J J^T + one w^T J, same run)",
           rows, key=("K", "n"))
    return rows


def step_variants(trainer_factory, methods: Sequence[str], pm: PluginManager,
                  infos: dict[str, dict[str, Any]]):
    """(label, mode, builder) per method and mode; ``builder()`` returns the step callable.

    Gramian weightings (loop path) also run with ``gramian`` and ``autogram``, the reference
    with ``batched`` too, and, with the ``torchjd`` extra, TorchJD's two engines for the methods
    in :data:`TORCHJD`. Builders are lazy so that a memory child builds only its own variant.
    """
    def train(trainer_factory, name, mode):
        def build():
            t = trainer_factory(name, mode)
            x, y = _batch(t)
            return lambda: t.train_step(x, y)
        return build

    out = []
    for name in methods:
        info = infos[name]
        if info["requires"] == "losses":
            out.append((name, "losses", train(trainer_factory, name, "loop")))
            continue
        mode = "representation" if info["gradient_level"] == "representation" else "loop"
        out.append((name, mode, train(trainer_factory, name, "loop")))
        if mode == "loop":  # the same step from a plain loop: no hidden Trainer overhead
            out.append((name, "own loop",
                        lambda name=name: own_loop_step(trainer_factory(name, "loop"))))
        if info["gramian_weighting"] and mode == "loop":
            out.append((name, "gramian", train(trainer_factory, name, "gramian")))
            if name == REFERENCE:  # the vmapped producer, for comparison
                out.append((name, "batched", train(trainer_factory, name, "batched")))
            out.append((name, "autogram", train(trainer_factory, name, "autogram")))
            if name in TORCHJD and torchjd_available():
                for engine in ("autojac", "autogram"):
                    out.append((name, f"torchjd {engine}", lambda name=name, e=engine:
                                torchjd_steps(trainer_factory(name, "loop"), name)
                                [f"torchjd {e}"]))
    return out


def case_variants(workload: str, K: int, methods: Sequence[str], opts: Options,
                  pm: PluginManager, infos: dict[str, dict[str, Any]]):
    """``{key: ((method, mode), builder)}`` for one workload and K, floors first."""
    def floor(key):
        return lambda: floor_steps(make_trainer(workload, K, "mean", "loop", opts, pm))[key]

    cases = {"one_backward": (("floor", "one backward"), floor("one_backward")),
             "k_backward": (("floor", "K backward"), floor("k_backward")),
             "k_backward_stacked": (("floor", "K bwd stacked"), floor("k_backward_stacked"))}

    def factory(name, mode):
        return make_trainer(workload, K, name, mode, opts, pm)

    for name, mode, build in step_variants(factory, methods, pm, infos):
        cases[f"{name}@{mode}"] = ((name, mode), build)
    return cases


def training_steps(methods: Sequence[str], opts: Options, pm: PluginManager,
                   infos: dict[str, dict[str, Any]], emit: Callable[[str], None]
                   ) -> list[dict[str, Any]]:
    rows = []
    cases = [("lenet", 2)] if "lenet" in opts.workloads else []
    if "mlp" in opts.workloads:
        cases += [("mlp", K) for K in opts.step_ks]
    for workload, K in cases:
        built = case_variants(workload, K, methods, opts, pm, infos)
        variants = {key: build() for key, (_, build) in built.items()}
        res = time_variants(variants, "k_backward", opts.rounds, opts.inner)
        one = res["one_backward"]["ms"]
        for key, r in res.items():
            name, mode = built[key][0]
            rows.append({"workload": workload, "K": K, "method": name, "mode": mode,
                         "ms": r["ms"], "ratio_k_backward": r["ratio"],
                         "ratio_one_backward": r["ms"] / one,
                         "cpu_ms": r["cpu_ms"], "cpu_ratio_k_backward": r["cpu_ratio"],
                         "best_ms": r["best_ms"], "best_ratio_k_backward": r["best_ratio"],
                         "iterative": infos.get(name, {}).get("iterative", False)})
    _step_table(emit, rows)
    return rows


def density_steps(methods: Sequence[str], opts: Options, pm: PluginManager,
                  infos: dict[str, dict[str, Any]], emit: Callable[[str], None]
                  ) -> list[dict[str, Any]]:
    rows = []
    K = max(k for k in opts.step_ks if k <= 10) if any(k <= 10 for k in opts.step_ks) else 2
    for name in methods:
        if infos[name]["requires"] == "losses":
            continue
        variants, ns = {}, {}
        for density in opts.densities:
            trainer = make_trainer("mlp", K, name, "loop", opts, pm)
            mask = random_neuron_mask(dict(trainer.shared), density,
                                      torch.Generator().manual_seed(1))
            trainer.set_mask(mask)
            x, y = _batch(trainer)
            key = f"{density:g}"
            variants[key] = lambda t=trainer, x=x, y=y: t.train_step(x, y)
            ns[key] = (trainer.engine.n, mask.trainable_fraction)
            if density == opts.densities[0]:
                base = key
            # the aggregator alone on a J of this width
            J = torch.randn(K, trainer.engine.n, generator=torch.Generator().manual_seed(2))
            ctx = {"losses": torch.rand(K) + 0.5, "step": 0, "epoch": 0,
                   "task_names": trainer.task_names, "generator": torch.Generator()}
            variants["agg " + key] = lambda a=trainer.aggregator, J=J, c=ctx: a(J, **c)
            if infos[name]["gramian_weighting"]:  # the same mask through the autogram engine
                variants["ag " + key] = autogram_step(
                    make_trainer("mlp", K, name, "loop", opts, pm), mask)
        res = time_variants(variants, base, opts.rounds, opts.inner)
        for density in opts.densities:
            key = f"{density:g}"
            n, frac = ns[key]
            rows.append({"method": name, "K": K, "density": density, "trainable_fraction": frac,
                         "n": n, "step_ms": res[key]["ms"], "ratio_to_dense": res[key]["ratio"],
                         "best_ratio_to_dense": res[key]["best_ratio"],
                         "cpu_ratio_to_dense": res[key]["cpu_ratio"],
                         "aggregator_ms": res["agg " + key]["best_ms"]})
            ag, ag_base = res.get("ag " + key), res.get("ag " + base)
            if ag is not None and ag_base is not None:
                rows[-1].update({"autogram_ms": ag["ms"],
                                 "autogram_ratio_to_dense": ag["ms"] / ag_base["ms"],
                                 "autogram_ratio_to_dense_loop": ag["ms"] / res[base]["ms"]})
    emit(f"\nSparse training (MLP encoder, K = {K}, random per-neuron masks): the whole step "
         "in loop mode and, for Gramian weightings, through the autogram engine")
    emit(f"{'method':<22}{'density':>8}{'n':>10}{'step ms':>10}{'x dense':>9}{'best':>7}"
         f"{'cpu':>7}{'agg ms (best)':>15}{'autogram ms':>13}{'x dense':>9}{'/loop dense':>12}")
    for r in rows:
        ag = (f"{r['autogram_ms']:>13.2f}{r['autogram_ratio_to_dense']:>9.2f}"
              f"{r['autogram_ratio_to_dense_loop']:>12.2f}" if "autogram_ms" in r else "")
        emit(f"{r['method']:<22}{r['trainable_fraction']:>8.3f}{r['n']:>10}{r['step_ms']:>10.2f}"
             f"{r['ratio_to_dense']:>9.2f}{r['best_ratio_to_dense']:>7.2f}"
             f"{r['cpu_ratio_to_dense']:>7.2f}{r['aggregator_ms']:>15.3f}{ag}")
    return rows


# -- peak memory --------------------------------------------------------------------------


def _status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"no {field} in /proc/self/status")


def memory_child(spec: dict[str, Any]) -> None:
    """Subprocess body: build ONE variant, run it, print its peak memory as JSON.

    torch's CPU allocations bypass ``tracemalloc``, so the figure is the kernel's resident
    high-water mark: after building the variant and one warm-up step (its freed heap returned
    with ``malloc_trim``), ``/proc/self/clear_refs`` ("5") resets it to
    the current resident set (``VmRSS``); after ``steps`` steps ``VmHWM - VmRSS(before)`` is
    the most memory the step ever added on top of the model, data and interpreter. One variant
    per process, so no other variant's allocations (or cached free memory) hide or inflate it.
    Linux only: elsewhere the child reports nothing.
    """
    import gc

    opts = Options(**{**spec["opts"], "mlp_sizes": tuple(spec["opts"]["mlp_sizes"])})
    if opts.threads:
        torch.set_num_threads(opts.threads)
    pm = get_plugin_manager()
    infos = {m: method_info(pm, m) for m in spec["methods"]}
    built = case_variants(spec["workload"], spec["K"], spec["methods"], opts, pm, infos)
    fn = built[spec["key"]][1]()
    fn()  # one-time initialisation (thread pools, optimizer state) is not the step's memory
    gc.collect()
    try:  # hand the warm-up's freed heap back to the kernel, or the steps would reuse it unseen
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
        f.write("5")  # reset VmHWM to the current resident set
    rss0 = _status_kib("VmRSS")
    for _ in range(spec.get("steps", 3)):
        fn()
    print(json.dumps({"rss_before_kib": rss0, "peak_kib": _status_kib("VmHWM")}))


def memory_steps(methods: Sequence[str], opts: Options, pm: PluginManager,
                 infos: dict[str, dict[str, Any]], emit: Callable[[str], None]
                 ) -> list[dict[str, Any]]:
    """Peak extra memory of each step variant on the MLP at the largest step K, one
    subprocess per variant (see :func:`memory_child`), as a ratio to the honest floor's."""
    import subprocess
    import sys

    K = max(opts.step_ks)
    gram = [m for m in methods if infos[m]["gramian_weighting"]][:1]
    keys = [k for k in case_variants("mlp", K, gram, opts, pm, infos)]
    rows = []
    for key in keys:
        spec = {"opts": attrs.asdict(opts), "methods": gram, "workload": "mlp", "K": K,
                "key": key}
        code = ("import json, sys; from mtlkit.bench import memory_child; "
                "memory_child(json.loads(sys.argv[1]))")
        proc = subprocess.run([sys.executable, "-c", code, json.dumps(spec, default=_jsonable)],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            emit(f"memory: {key} failed: {proc.stderr.strip().splitlines()[-1:]}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append({"K": K, "variant": key, "extra_mib": (r["peak_kib"] - r["rss_before_kib"])
                     / 1024, "peak_mib": r["peak_kib"] / 1024})
    floor = next((r["extra_mib"] for r in rows if r["variant"] == "k_backward"), math.nan)
    emit(f"\nPeak memory (MLP, K = {K}; one process per variant: resident high-water mark "
         "over 3 steps minus the resident set before them; ratio to the K-backward floor's)")
    emit(f"  {'variant':<34}{'extra MiB':>11}{'/K-bwd':>9}{'process peak MiB':>18}")
    for r in rows:
        r["ratio_k_backward"] = r["extra_mib"] / floor if floor > 0 else math.nan
        emit(f"  {r['variant']:<34}{r['extra_mib']:>11.2f}{r['ratio_k_backward']:>9.2f}"
             f"{r['peak_mib']:>18.1f}")
    return rows


# -- output -----------------------------------------------------------------------------------


def _table(emit, title, rows, key):
    emit(f"\n{title}")
    methods = list(dict.fromkeys(r["method"] for r in rows))
    groups = list(dict.fromkeys(tuple(r[k] for k in key) for r in rows))
    head = f"{'method':<22}" + "".join(f"{f'K={g[0]} n={g[1]:.0e}':>22}" for g in groups)
    emit(head)
    for m in methods:
        cells = []
        for g in groups:
            r = next((r for r in rows if r["method"] == m and tuple(r[k] for k in key) == g),
                     None)
            cells.append(f"{r['best_ms']:>11.3f} ({r['best_ratio']:5.2f}x)" if r
                         else f"{'-':>22}")
        emit(f"{m:<22}" + "".join(f"{c:>22}" for c in cells))


def _step_table(emit, rows):
    emit("\nTraining step (median ms; ratios to the honest K-backward floor (K autograd.grad "
         "calls, each on one task's own loss) and to one backward, same run: medians of paired "
         "rounds, best round over best round, process CPU time)")
    emit("  'K bwd stacked': the same K calls on torch.stack(losses)[k], which back-propagates "
         "zeros through all K heads each time")
    emit("  * iterative solver (overhead reported, no 1.10x target); 'representation' rows "
         "use gradients w.r.t. the shared representation")
    cases = list(dict.fromkeys((r["workload"], r["K"]) for r in rows))
    for workload, K in cases:
        emit(f"{workload}, K = {K}")
        emit(f"  {'method':<22}{'mode':<16}{'ms':>9}{'/K-bwd':>9}{'/1-bwd':>9}"
             f"{'best /K-bwd':>13}{'cpu /K-bwd':>12}")
        for r in rows:
            if (r["workload"], r["K"]) != (workload, K):
                continue
            star = " *" if r["iterative"] else ""
            emit(f"  {r['method'] + star:<22}{r['mode']:<16}{r['ms']:>9.2f}"
                 f"{r['ratio_k_backward']:>9.2f}{r['ratio_one_backward']:>9.2f}"
                 f"{r['best_ratio_k_backward']:>13.2f}{r['cpu_ratio_k_backward']:>12.2f}")


def run_aggregators_bench(opts: Options, *, emit: Callable[[str], None] = print,
                          json_path: str | None = None, pm: PluginManager | None = None
                          ) -> dict[str, Any]:
    pm = pm or get_plugin_manager()
    if opts.threads:
        torch.set_num_threads(opts.threads)
    registered = pm.names("aggregator")
    methods = opts.methods if opts.methods is not None else [*registered, REFERENCE]
    unknown = [m for m in methods if m != REFERENCE and m not in registered]
    if unknown:
        raise ConfigError(f"invalid --methods entry {unknown[0]!r}: registered aggregators are "
                          f"{', '.join(registered)} (and {REFERENCE})")
    infos = {}
    for m in methods:
        try:
            infos[m] = method_info(pm, m)
        except (MtlkitError, ImportError) as exc:  # required parameters, missing extra
            emit(f"skipping {m}: {exc}")
    methods = list(infos)
    emit(f"mtlkit bench aggregators: torch {torch.__version__}, {torch.get_num_threads()} "
         f"threads, methods {', '.join(methods)}")
    t0 = time.perf_counter()
    result = {
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "options": attrs.asdict(opts), "methods": infos,
    }
    if "latency" in opts.parts:
        result["aggregator_latency"] = aggregator_latency(methods, opts, pm, emit)
    if "steps" in opts.parts:
        result["training_steps"] = training_steps(methods, opts, pm, infos, emit)
    if "density" in opts.parts:
        result["density"] = density_steps(methods, opts, pm, infos, emit)
    if "memory" in opts.parts and "mlp" in opts.workloads and any(
            infos[m]["gramian_weighting"] for m in methods):
        result["memory"] = memory_steps(methods, opts, pm, infos, emit)
    result["wall_s"] = time.perf_counter() - t0
    emit(f"\n(total {result['wall_s']:.1f} s)")
    if json_path:
        with open(json_path, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2, default=_jsonable)
    return result


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, tuple):
        return list(obj)
    return str(obj)
