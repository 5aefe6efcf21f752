"""``mtlkit train``: train one configuration and write ``DIR/results.json``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from mtlkit.commands._params import parse_params
from mtlkit.config import (
    AMP_MODES,
    DEVICES,
    JACOBIAN_MODES,
    LOGGERS,
    LR_SCHEDULES,
    MASK_POINTS,
    NONFINITE_POLICIES,
    OPTIMIZERS,
    RESUMABLE_KEYS,
    load_toml,
    make_config,
)
from mtlkit.errors import ConfigError

# flag dest -> config key, for flags that map one to one
_SIMPLE = ("benchmark", "aggregator", "mask", "density", "k", "epochs", "max_steps", "seed",
           "data_root", "lr", "batch_size", "optimizer", "momentum", "weight_decay",
           "jacobian", "device", "threads", "probe_every", "nonfinite", "baselines", "workers",
           "eval_every", "mask_point", "max_skipped_fraction",
           "backbone_weights", "amp", "accumulation_steps", "grad_clip", "lr_schedule",
           "warmup_steps", "log_every")


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("train", help="train one configuration",
                       description="Train a multi-task model with an aggregator and a mask.")
    p.add_argument("--config", metavar="FILE.toml", help="TOML config; flags override it")
    p.add_argument("--benchmark", help="benchmark name (default multi_mnist)")
    p.add_argument("--aggregator", help="aggregator name (default mean)")
    p.add_argument("--mask", help="mask strategy name (default dense)")
    p.add_argument("--density", type=float, help="requested trainable fraction in (0, 1]")
    p.add_argument("--k", type=int, help="per-neuron trainable count (alternative to density)")
    p.add_argument("--mask-point", choices=MASK_POINTS,
                   help="trainable (default): the aggregator sees only the trainable "
                        "coordinates; full: it sees all shared coordinates and its update is "
                        "masked (docs/sparse-training.md)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--max-steps", type=int, help="stop after this many optimizer steps")
    p.add_argument("--seed", type=int)
    p.add_argument("--data-root", help="dataset folder in its official layout")
    p.add_argument("--tasks", help="comma-separated subset of the benchmark's tasks")
    p.add_argument("--lr", type=float)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--optimizer", choices=OPTIMIZERS)
    p.add_argument("--momentum", type=float)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--jacobian", choices=JACOBIAN_MODES, help="per-task gradient engine")
    p.add_argument("--device", choices=DEVICES)
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--workers", type=int, help="DataLoader workers for disk-backed data")
    p.add_argument("--eval-every", type=int, help="evaluate every N epochs (and at the end)")
    p.add_argument("--probe", action="append", dest="probes", metavar="NAME",
                   help="conflict probe to run (repeatable; default cosine; 'none' for none)")
    p.add_argument("--probe-every", type=int, help="observe every N steps")
    p.add_argument("--nonfinite", choices=NONFINITE_POLICIES,
                   help="on NaN/Inf gradients: error (default) or skip the step")
    p.add_argument("--max-skipped-fraction", type=float, metavar="F",
                   help="with --nonfinite skip: fail (exit 4) when more than this share of an "
                        "epoch's steps was skipped (default 0.1)")
    p.add_argument("--backbone-weights", metavar="FILE.pt",
                   help="pre-trained encoder state_dict loaded before training (any backbone)")
    p.add_argument("--amp", choices=AMP_MODES,
                   help="mixed precision: bf16 autocast, or fp16 with a GradScaler (default off)")
    p.add_argument("--accumulation-steps", type=int, metavar="N",
                   help="process each batch in N micro-batches (same update, less memory)")
    p.add_argument("--grad-clip", type=float, metavar="NORM", help="clip the gradient norm")
    p.add_argument("--lr-schedule", choices=LR_SCHEDULES,
                   help="constant or cosine (default: the benchmark's step decay)")
    p.add_argument("--warmup-steps", type=int, metavar="N", help="linear learning-rate warm-up")
    p.add_argument("--log", action="append", choices=LOGGERS, metavar="LOGGER",
                   help="experiment logger writing into DIR: tensorboard, wandb (offline) or "
                        "mlflow (local SQLite store); repeatable")
    p.add_argument("--log-every", type=int, metavar="N",
                   help="log (and, without a terminal, print progress) every N steps")
    p.add_argument("--baselines", metavar="FILE.json",
                   help="single-task metrics {task: {metric: value}} for delta_m")
    p.add_argument("--aggregator-param", action="append", metavar="KEY=VALUE")
    p.add_argument("--mask-param", action="append", metavar="KEY=VALUE")
    p.add_argument("--benchmark-param", action="append", metavar="KEY=VALUE")
    p.add_argument("--probe-param", action="append", metavar="PROBE.KEY=VALUE")
    p.add_argument("--stl", action="store_true",
                   help="train each task alone (dense, mean); write DIR/stl_baselines.json, "
                        "reusable by later runs as --baselines DIR/stl_baselines.json")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="continue from DIR/checkpoint.pt; refused if the configuration "
                            "differs, except " + ", ".join(RESUMABLE_KEYS)
                            + " (e.g. raise --epochs to extend a run)")
    again.add_argument("--overwrite", action="store_true",
                       help="replace the outputs of an earlier run in DIR (a non-empty DIR is "
                            "refused otherwise)")
    p.add_argument("--quiet", action="store_true", help="no progress line or summary")
    p.add_argument("--out", metavar="DIR", help="output folder (default runs/<name>)")
    return p


def config_values(args: argparse.Namespace) -> dict[str, Any]:
    values: dict[str, Any] = load_toml(args.config) if args.config else {}
    for key in _SIMPLE:
        v = getattr(args, key, None)
        if v is not None:
            values[key] = v
    if args.log:
        values["log"] = list(dict.fromkeys(args.log))
    if args.tasks:
        values["tasks"] = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if args.probes:
        values["probes"] = [] if args.probes == ["none"] else args.probes
    for flag, key in (("aggregator_param", "aggregator_params"), ("mask_param", "mask_params"),
                      ("benchmark_param", "benchmark_params")):
        params = parse_params(getattr(args, flag), "--" + flag.replace("_", "-"))
        if params:
            values[key] = {**values.get(key, {}), **params}
    probe_params = parse_params(args.probe_param, "--probe-param")
    for dotted, v in probe_params.items():
        probe, _, key = dotted.partition(".")
        values.setdefault("probe_params", {}).setdefault(probe, {})[key] = v
    return values


def default_out(values: dict[str, Any]) -> Path:
    name = "_".join(str(values.get(k, d)) for k, d in
                    (("benchmark", "multi_mnist"), ("aggregator", "mean"), ("mask", "dense")))
    return Path("runs") / f"{name}_seed{values.get('seed', 0)}"


#: what ``mtlkit train`` writes into its folder (``--overwrite`` removes exactly these)
OUTPUTS = ("results.json", "epochs.csv", "steps.csv", "checkpoint.pt", "stl_baselines.json",
           "stl", "tensorboard", "mlruns", "wandb")


def run(args: argparse.Namespace) -> int:
    from mtlkit.rundir import contents, open_run_dir

    values = config_values(args)
    config = make_config(values, source=args.config or "command line")
    config.load_baselines()  # a missing or malformed file fails now, not after training
    out = Path(args.out) if args.out else default_out(values)
    progress = False if args.quiet else None
    with open_run_dir(out, outputs=OUTPUTS, resume=args.resume, overwrite=args.overwrite):
        if args.resume and not (out / "checkpoint.pt").is_file() and contents(out):
            raise ConfigError(f"invalid --resume: {out} holds no checkpoint.pt to continue "
                              "(checkpoint = false, or no epoch finished); use --overwrite to "
                              "start over")
        if args.stl:
            return _run_stl(config, out, progress, args.quiet)
        from mtlkit.trainer import Trainer  # heavy imports only when training

        trainer = Trainer(config, out, progress=progress)
        results = trainer.fit(resume=args.resume)
    if not args.quiet:
        print_summary(results, out)
    return 0


def _run_stl(config, out: Path, progress, quiet: bool) -> int:
    from mtlkit.stl import stl_baselines

    baselines = stl_baselines(config, out, progress)
    if not quiet:
        print(json.dumps(baselines, indent=2))
        print(f"single-task baselines: {out / 'stl_baselines.json'} "
              f"(reuse with --baselines {out / 'stl_baselines.json'})")
    return 0


def print_summary(results: dict[str, Any], out: Path) -> None:
    tasks = results["tasks"]
    metrics = sorted({m for t in tasks.values() for m in t})
    print(f"{results['benchmark']}: aggregator={results['aggregator']} mask={results['mask']} "
          f"seed={results['seed']}  {results['epochs']} epochs, {results['steps']} steps, "
          f"{results['wall_s']:.1f} s")
    width = max(len("task"), *(len(t) for t in tasks))
    print("  " + "task".ljust(width) + "".join(f"  {m:>10}" for m in metrics))
    for task, values in tasks.items():
        print("  " + task.ljust(width)
              + "".join(f"  {values.get(m, float('nan')):>10.4f}" for m in metrics))
    c = results.get("conflict") or {}
    if c:
        print(f"  conflict incidence: all steps {c['incidence_all']:.3f}, last half "
              f"{c['incidence_last_half']:.3f} (trainable coords: "
              f"{c['incidence_trainable_all']:.3f} / {c['incidence_trainable_last_half']:.3f})")
    k = (results.get("mask_info") or {}).get("k")
    print(f"  trainable fraction of shared parameters: {results['trainable_fraction']:.3f}"
          + (f" (mask {results['mask']}, K={k} per neuron)" if k is not None else ""))
    if results.get("delta_m") is not None:
        print(f"  delta_m: {results['delta_m']:+.2f}% (metric-level, lower is better); "
              f"{results['delta_m_task_level']:+.2f}% (Recon's task-level, higher is better)")
    print(f"  results: {out / 'results.json'}")
