"""Runs a validated search with Ray Tune.

Ray: an embedded local instance by default (all local CPUs, 127.0.0.1, no dashboard), or an
existing cluster with ``address`` (or ``RAY_ADDRESS``). If the calling process already holds a
Ray session (a notebook, a test fixture) it is used as is and left running.

Each trial runs :class:`mtlkit.trainer.Trainer` in the Ray worker. After every epoch the
trainer writes its full state to ``DIR/trials/<id>/checkpoint.pt`` (atomically), then the
epoch's metrics (plus seed-free means over tasks, Δm and conflict incidence in %) go to Tune
with a small Tune checkpoint that records only the epoch reached. A retried or resumed trial
loads ``checkpoint.pt``, so at most one epoch of work is redone and none is trained twice.

Why the state is not in Tune's checkpoint: Tune writes the experiment state that points at a
trial's checkpoint asynchronously, so after a driver kill it can point at an older one. Tune
deletes old checkpoints (``num_to_keep``), and restoring from a deleted one fails the trial;
keeping every full checkpoint costs an epoch's model per epoch. The position markers are a few
bytes, all are kept, and whatever epoch a stale state names, the trial's own checkpoint is at
least that far (it is written before the report).

Files under the search folder ``DIR``::

    DIR/search.json         the spec as run (checked by --resume) and the trial list
    DIR/tune/               Ray Tune's experiment (state, per-trial results, checkpoints)
    DIR/stl/<setting>/      single-task baselines for Δm (``stl = true``, see mtlkit.search.stl)
    DIR/tune-state/         consistent snapshots of Tune's state (see mtlkit.search.state)
    DIR/trials/<trial_id>/  the trainer's own output (results.json, epochs.csv, checkpoint.pt,
                            attempts.jsonl)
    DIR/summary.csv, DIR/summary.md, DIR/*.png   written by mtlkit.search.report
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from mtlkit.errors import ConfigError
from mtlkit.search.spec import SearchSpec, set_dotted
from mtlkit.search.state import make_state_keeper, restore_snapshot
from mtlkit.search.stl import prepare_stl, with_baselines

EXPERIMENT = "tune"
POSITION_FILE = "position.json"


# -- inside the Ray worker -------------------------------------------------------------------


def resolve_trial(params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(swept values, TrainConfig values) of one trial from its Tune ``config``."""
    import copy

    trial = params["trial"]
    swept = dict(trial["swept"])
    values = copy.deepcopy(trial["values"])
    for key, value in (params.get("space") or {}).items():
        set_dotted(values, key, value)
        swept[key] = value
    return swept, values


def run_trial(params: dict[str, Any]) -> None:
    """The Tune trainable: train one configuration, report and checkpoint every epoch."""
    import ray
    from ray import tune

    from mtlkit.config import make_config
    from mtlkit.trainer import Trainer

    _, values = resolve_trial(params)
    # One torch thread per CPU Tune reserved: more would oversubscribe the node.
    values.setdefault("threads", max(1, int(params["cpus"])))
    if params.get("gpus") and "device" not in values:
        values["device"] = "auto"
    # The trainer's checkpoint.pt is the state that resumes (see the module docstring).
    values["checkpoint"] = True
    config = make_config(values, source="search trial")
    trial_id = tune.get_context().get_trial_id()
    out = Path(params["out_root"]) / "trials" / trial_id
    reporter = _EpochReporter()
    trainer = Trainer(config, out, progress=False, on_epoch_end=reporter)
    state = trial_state(tune.get_checkpoint(), out / "checkpoint.pt", trial_id)
    if state is not None:
        trainer.load_state(state)
    reporter.static = {
        "node_id": ray.get_runtime_context().get_node_id(),
        "pid": os.getpid(),
        "resumed_from_epoch": trainer.epoch,
        "epochs_total": trainer.epochs,
    }
    _append_jsonl(out / "attempts.jsonl", {"time": time.time(), **reporter.static})
    trainer.fit()
    if trainer.epoch == reporter.static["resumed_from_epoch"] and trainer.history:
        # It had finished before the driver recorded that: give Tune its final result again.
        reporter(trainer.history[-1], trainer)


def trial_state(checkpoint: Any, own: Path, trial_id: str) -> dict[str, Any] | None:
    """The trainer state a (re)started trial continues from: ``own`` (``checkpoint.pt``), or
    None for a fresh start. Tune's ``checkpoint`` only says which epoch the trial reported; a
    state behind it means ``--out`` is not shared by the node running the trial now."""
    from mtlkit.results import load_checkpoint

    reported = 0
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            reported = json.loads((Path(folder) / POSITION_FILE).read_text())["epoch"]
    state = load_checkpoint(own) if own.is_file() else None
    have = state["epoch"] if state is not None else 0
    if have < reported:
        raise RuntimeError(
            f"trial {trial_id} reported epoch {reported} but its checkpoint {own} "
            + (f"holds epoch {have}" if state is not None else "does not exist")
            + " on this node: the search folder (--out) must be on a filesystem every Ray "
            "node shares at the same path")
    return state


class _EpochReporter:
    """``on_epoch_end`` callback: metrics + the epoch reached (as a Tune checkpoint)."""

    def __init__(self) -> None:
        self.static: dict[str, Any] = {}
        self.carried: dict[str, float] = {}

    def __call__(self, record: dict[str, Any], trainer: Any) -> None:
        from ray import tune

        metrics = epoch_metrics(record, trainer, self.carried)
        metrics.update(self.static)
        with tempfile.TemporaryDirectory(prefix="mtlkit-ckpt-") as folder:
            position = {"epoch": trainer.epoch, "step": trainer.step}
            (Path(folder) / POSITION_FILE).write_text(json.dumps(position))
            # report() copies the folder into the experiment folder before returning.
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))


def epoch_metrics(record: dict[str, Any], trainer: Any, carried: dict[str, float]
                  ) -> dict[str, Any]:
    """The numbers one epoch reports: the trainer's record plus derived summaries."""
    metrics = {k: v for k, v in record.items() if _finite(v)}
    # Evaluation may skip epochs (eval_every); keep the last values so every report has them.
    for k, v in metrics.items():
        if k.startswith(("val.", "test.")):
            carried[k] = v
    metrics = {**carried, **metrics}
    tasks = list(trainer.task_names)
    for split in ("val", "test"):
        per_metric: dict[str, list[float]] = {}
        for task in tasks:
            for k, v in metrics.items():
                prefix = f"{split}.{task}."
                if k.startswith(prefix):
                    per_metric.setdefault(k[len(prefix):], []).append(v)
        for name, vs in per_metric.items():
            if len(vs) == len(tasks):
                metrics[f"{split}.mean.{name}"] = sum(vs) / len(vs)
    results = trainer.results()
    for key in ("delta_m", "delta_m_task_level"):
        if _finite(results.get(key)):
            metrics[key] = results[key]
    conflict = results.get("conflict") or {}
    for key in ("all", "last_half", "trainable_all", "trainable_last_half"):
        v = conflict.get(f"incidence_{key}")
        if _finite(v):
            metrics[f"p_{key}_pct"] = 100.0 * v
    metrics["trainable_fraction"] = results["trainable_fraction"]
    # 1 on the trial's final report (epochs or max_steps reached): tells "done" from ASHA stops.
    metrics["finished"] = int(trainer.epoch >= trainer.epochs
                              or trainer.step >= trainer.total_steps)
    metrics["wall_s"] = trainer.wall_s
    return metrics


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _append_jsonl(path: Path, row: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


def trial_dirname(trial: Any) -> str:
    # Short, stable folder names: Tune's default embeds every parameter value.
    return str(trial.trial_id)


# -- the driver ------------------------------------------------------------------------------


def connect(address: str | None) -> bool:
    """Start or attach to Ray; True if this call started it (and must shut it down)."""
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        try:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        except (ConnectionError, ValueError) as exc:
            raise ConfigError(f"invalid --address {address!r}: cannot attach to a Ray cluster "
                              f"there ({exc})") from None
    else:
        # "local" always starts a private instance, even if a `ray start` cluster runs here.
        ray.init(address="local", include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING)
    return True


def check_capacity(spec: SearchSpec) -> None:
    """Fail before any trial starts when no node could ever host one."""
    import ray

    total = ray.cluster_resources()
    cpus, gpus = total.get("CPU", 0.0), total.get("GPU", 0.0)
    if spec.cpus_per_trial > cpus:
        raise ConfigError(f"{spec.path}: invalid [search] cpus_per_trial="
                          f"{spec.cpus_per_trial!r}: the Ray cluster has only {cpus:g} CPUs")
    if spec.gpus_per_trial > gpus:
        raise ConfigError(f"{spec.path}: invalid [search] gpus_per_trial="
                          f"{spec.gpus_per_trial!r}: the Ray cluster has {gpus:g} GPUs")


def build_tuner(spec: SearchSpec, out: Path, *, resume: bool, callbacks: list[Any],
                baselines: dict[str, str] | None = None) -> Any:
    """Tune's Tuner for ``spec``; ``baselines`` (``{STL setting: path}``) go into the trials."""
    from ray import tune

    trainable = tune.with_resources(run_trial, spec.resources)
    exp_dir = out / EXPERIMENT
    if resume:
        return tune.Tuner.restore(str(exp_dir), trainable=trainable, resume_unfinished=True,
                                  resume_errored=True)
    param_space: dict[str, Any] = {"out_root": str(out), "cpus": spec.cpus_per_trial,
                                   "gpus": spec.gpus_per_trial}
    search_alg = None
    if spec.search_alg == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        param_space["trial"] = with_baselines(spec.trials()[0].to_dict(), baselines or {})
        param_space["space"] = {k: d.to_tune() for k, d in spec.space.items()}
        # max_concurrent_trials below wraps it in a ConcurrencyLimiter.
        search_alg = OptunaSearch(seed=spec.seed)
    else:
        param_space["trial"] = tune.grid_search([with_baselines(t.to_dict(), baselines or {})
                                                 for t in spec.trials()])
    scheduler = None
    if spec.scheduler == "asha":
        from ray.tune.schedulers import ASHAScheduler

        max_t = spec.asha.get("max_t") or spec.base.get("epochs") or 100
        # The trainer's epoch, not Tune's training_iteration: the two differ after a trial
        # resumed from its own checkpoint ahead of the one Tune had recorded.
        scheduler = ASHAScheduler(time_attr="epoch", max_t=max_t,
                                  grace_period=spec.asha.get("grace_period", 1),
                                  reduction_factor=spec.asha.get("reduction_factor", 2))
    tune_config = tune.TuneConfig(
        metric=spec.metric, mode=spec.mode, num_samples=spec.num_samples,
        search_alg=search_alg, scheduler=scheduler,
        max_concurrent_trials=spec.max_concurrent or None,
        # Reusing the worker process skips a Python + torch start per trial (15 s -> 4 s for
        # 8 short trials measured here).
        reuse_actors=True,
        trial_dirname_creator=trial_dirname)
    run_config = tune.RunConfig(
        name=EXPERIMENT, storage_path=str(out), verbose=0, callbacks=callbacks,
        failure_config=tune.FailureConfig(max_failures=spec.max_failures),
        # Every position marker is kept: a stale experiment state may name any of them.
        checkpoint_config=tune.CheckpointConfig(num_to_keep=None))
    return tune.Tuner(trainable, param_space=param_space, tune_config=tune_config,
                      run_config=run_config)


def expected_trials(spec: SearchSpec) -> int:
    return spec.num_samples * (1 if spec.space else len(spec.trials()))


def make_progress_callback(spec: SearchSpec, enabled: bool) -> Any:
    from ray.tune import Callback

    class _Progress(Callback):
        """One line per finished, failed or retried trial (Tune itself runs with verbose=0)."""

        def __init__(self) -> None:
            self.done = 0
            self.total = expected_trials(spec)
            self.start = time.monotonic()

        def _clock(self) -> str:
            """Elapsed time and, from the finished trials' pace, the time left."""
            elapsed = time.monotonic() - self.start
            left = elapsed / self.done * max(self.total - self.done, 0) if self.done else None
            eta = "?" if left is None else f"{int(left) // 60}:{int(left) % 60:02d}"
            return f"elapsed {int(elapsed) // 60}:{int(elapsed) % 60:02d}, ETA {eta}"

        def _label(self, trial: Any) -> str:
            swept, _ = resolve_trial(trial.config)
            return ",".join(f"{k}={v}" for k, v in swept.items()) or trial.trial_id

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.done += 1
            value = (trial.last_result or {}).get(spec.metric)
            shown = f"{value:.4g}" if isinstance(value, (int, float)) else "n/a"
            if enabled:
                print(f"[{self.done}/{self.total}] {trial.trial_id} {self._label(trial)}: "
                      f"{spec.metric}={shown} ({self._clock()})", flush=True)

        def on_trial_error(self, iteration, trials, trial, **info):
            self.done += 1
            if enabled:
                print(f"[{self.done}/{self.total}] {trial.trial_id} {self._label(trial)}: "
                      "FAILED (see summary.csv)", flush=True)

        def on_trial_recover(self, iteration, trials, trial, **info):
            if enabled:
                print(f"retrying {trial.trial_id} {self._label(trial)} from its last "
                      "checkpoint", flush=True)

    return _Progress()


def check_out(spec: SearchSpec, out: Path, resume: bool) -> None:
    """Refuse a used folder on a first run; on --resume check it is the same search."""
    state = out / "search.json"
    if resume:
        if not state.is_file() or not (out / EXPERIMENT).is_dir():
            raise ConfigError(f"invalid --resume: {out} holds no search to resume "
                              "(run without --resume first)")
        recorded = json.loads(state.read_text(encoding="utf-8"))
        if recorded.get("fingerprint") != spec.fingerprint():
            raise ConfigError(f"invalid --resume: {spec.path} (quick={spec.quick}) differs "
                              f"from the spec this search started with ({out / 'search.json'})")
        return
    if state.exists() or (out / EXPERIMENT).exists():
        raise ConfigError(f"invalid --out {str(out)!r}: it already holds a search; use "
                          "--resume to continue it or choose another folder")


def record_spec(spec: SearchSpec, out: Path) -> None:
    from mtlkit.results import write_json

    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "search.json", {"spec": spec.raw, "path": spec.path, "quick": spec.quick,
                       "fingerprint": spec.fingerprint(),
                       "trials": [t.to_dict() for t in spec.trials()]})


def run_search(spec: SearchSpec, out: str | Path, *, address: str | None = None,
               resume: bool = False, verbose: bool = True) -> Any:
    """Run (or resume) ``spec`` into ``out``; returns Tune's ResultGrid."""
    out = Path(out).expanduser().resolve()
    check_out(spec, out, resume)
    import ray

    from mtlkit.search.cleanup import ProcessTracker

    tracker = ProcessTracker()
    # a Ctrl-C while ray.init starts the local instance must still shut it down: the whole
    # start-up is inside the try
    owns = not ray.is_initialized()
    try:
        owns = connect(address)
        tracker.record()
        check_capacity(spec)
        if resume:
            note = restore_snapshot(out / EXPERIMENT)
            if note:
                print(f"mtlkit search: {note}", flush=True)
        else:
            # Before search.json: a search killed while training them is simply run again.
            baselines = prepare_stl(spec, out, verbose=verbose) if spec.stl else {}
            record_spec(spec, out)
        tuner = build_tuner(spec, out, resume=resume, baselines=None if resume else baselines,
                            callbacks=[make_progress_callback(spec, verbose),
                                       make_state_keeper()])
        return tuner.fit()
    finally:
        if owns:
            # no Ray process outlives the search, however it ends (see mtlkit.search.cleanup)
            tracker.record()
            try:
                ray.shutdown()
            finally:
                tracker.end_leftovers()
