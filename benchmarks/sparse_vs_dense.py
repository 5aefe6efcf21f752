#!/usr/bin/env python3
"""Dense vs sparse (PSN) training: the sparse-training paper's claim, measured with mtlkit.

The paper (arXiv 2411.18615) claims that training only a fixed per-neuron top-K subset of the
shared encoder lowers the incidence of gradient conflict p% and improves multi-task
performance (Δm), alone and with any aggregator, above all when a *pre-trained* encoder is
fine-tuned with about 30% of it trainable (Tab. 1, §4.4). This script runs, per *setting*
(``random`` init and/or ``pretrained``: an encoder pre-trained by
``benchmarks/pretrain_encoder.py`` on a different source task and loaded with
``--backbone-weights``) and per benchmark,

* single-task baselines: ``mtlkit train --stl`` per seed from the same start (their mean over
  seeds is the Δm reference of that setting and benchmark), then
* {dense, PSN at every ``--density``} x aggregators x seeds:
  ``mtlkit train ... --probe cosine --baselines ...``,

all with ``--threads 1`` (``--jobs`` of them at once), then writes the Markdown report
(``_svd_report.py``): p% over all steps and over the last 50% of training on the full shared
gradient and on the trainable coordinates, task metrics, Δm in both conventions (mean ± std
over seeds), a paired t-test across seeds of the p% difference PSN - dense, PSN's time per step
relative to dense, conflict-over-training figures and the conflict-over-depth figure.

Every command is printed and listed in the report. Finished runs (an existing
``results.json``) are reused: interrupt and re-run to continue; the protocol's wall time sums
the invocations that ran something (``OUT/wall_time.json``).

Example (the documented pipeline check)::

    python benchmarks/sparse_vs_dense.py --benchmark multi_mnist --aggregator mean \\
        --seeds 0 1 2 --epochs 4 --out runs/sparse_vs_dense --doc docs/sparse-vs-dense.md
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _svd_report as report

REPO = Path(__file__).resolve().parent.parent
SETTINGS = ("random", "pretrained")


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "mtlkit.cli", *args]


def _show(cmd: list[str]) -> str:
    if cmd[1:3] == ["-m", "mtlkit.cli"]:
        return "mtlkit " + " ".join(shlex.quote(a) for a in cmd[3:])
    return "python " + " ".join(shlex.quote(a) for a in cmd[1:])


class Runner:
    """Logs every command (the report lists them) and runs the pending ones, ``jobs`` at once;
    a failed run is reported at the end instead of stopping the others."""

    def __init__(self, dry: bool, jobs: int) -> None:
        self.dry, self.jobs = dry, jobs
        self.log: list[str] = []
        self.failed: list[str] = []
        self.ran = 0

    def batch(self, items: list[tuple[list[str], bool]]) -> None:
        todo = []
        for cmd, done in items:
            self.log.append(_show(cmd))
            if not done:
                print("+ " + _show(cmd), flush=True)
                todo.append(cmd)
        if self.dry or not todo:
            return
        self.ran += len(todo)

        def one(cmd: list[str]) -> None:
            if subprocess.run(cmd).returncode != 0:
                self.failed.append(_show(cmd))

        with ThreadPoolExecutor(max_workers=self.jobs) as pool:
            list(pool.map(one, todo))


def common_args(a: argparse.Namespace, bench: str, seed: int, setting_args: list[str]
                ) -> list[str]:
    args = ["--benchmark", bench, "--seed", str(seed), "--threads", "1", "--quiet"]
    if a.epochs:
        args += ["--epochs", str(a.epochs)]
    if a.max_steps:
        args += ["--max-steps", str(a.max_steps)]
    for extra in a.train_arg or []:
        args += shlex.split(extra)
    return args + setting_args


def arms(a: argparse.Namespace) -> list[tuple[str, list[str]]]:
    """(label, mask flags): the dense baseline, then PSN at every requested density (or K)."""
    if a.k:
        return [("dense", ["--mask", "dense"]), (f"psn-k{a.k}", ["--mask", "psn", "--k",
                                                                 str(a.k)])]
    return [("dense", ["--mask", "dense"])] + [
        (f"psn-{d:g}", ["--mask", "psn", "--density", f"{d:g}"]) for d in a.densities]


def settings(a: argparse.Namespace, out: Path) -> list[tuple[str, Path, list[str]]]:
    """(setting, its run folder, its extra train flags)."""
    chosen = a.settings or (["random", "pretrained"] if a.pretrain else ["random"])
    if "pretrained" in chosen and not a.pretrain:
        raise SystemExit("--setting pretrained needs --pretrain 'ARGS' (the encoder to load)")
    single = len(chosen) == 1 and not a.pretrain
    return [(s, out if single else out / s,
             ["--backbone-weights", str(out / "pretrained_encoder.pt")]
             if s == "pretrained" else []) for s in chosen]


def pretrain(a: argparse.Namespace, out: Path, runner: Runner) -> None:
    path = out / "pretrained_encoder.pt"
    cmd = [sys.executable, str(REPO / "benchmarks" / "pretrain_encoder.py"),
           *shlex.split(a.pretrain), "--threads", "1", "--out", str(path)]
    runner.batch([(cmd, path.is_file())])


def stl_runs(a, bench: str, folder: Path, extra: list[str]) -> list[tuple[list[str], bool]]:
    return [(_cmd("train", "--stl", *common_args(a, bench, seed, extra), "--out",
                  str(folder / bench / "stl" / f"seed{seed}")),
             (folder / bench / "stl" / f"seed{seed}" / "stl_baselines.json").is_file())
            for seed in a.seeds]


def write_baselines(a, bench: str, folder: Path) -> Path:
    """The per-metric mean over seeds of the STL runs: the Δm reference."""
    path = folder / bench / "stl_baselines.json"
    per_seed = [json.loads((folder / bench / "stl" / f"seed{s}" / "stl_baselines.json")
                           .read_text()) for s in a.seeds]
    mean = {t: {m: statistics.fmean(s[t][m] for s in per_seed) for m in per_seed[0][t]}
            for t in per_seed[0]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(mean, indent=2) + "\n")
    return path


def train_runs(a, bench: str, folder: Path, extra: list[str]
               ) -> tuple[list[Path], list[tuple[list[str], bool]]]:
    folders, items = [], []
    baselines = folder / bench / "stl_baselines.json"
    probes = ["--probe", "cosine"] + [x for p in a.probes or [] for x in ("--probe", p)]
    for agg in a.aggregators:
        for arm, mask_flags in arms(a):
            for seed in a.seeds:
                run = folder / bench / agg / arm / f"seed{seed}"
                folders.append(run)
                cmd = _cmd("train", *common_args(a, bench, seed, extra), "--aggregator", agg,
                           *mask_flags, *probes, "--probe-every", str(a.probe_every),
                           "--baselines", str(baselines), "--out", str(run))
                items.append((cmd, (run / "results.json").is_file()))
    return folders, items


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--benchmark", action="append", dest="benchmarks", required=True,
                   help="benchmark name (repeatable)")
    p.add_argument("--aggregator", action="append", dest="aggregators", required=True,
                   help="aggregator name (repeatable), e.g. mean, pcgrad, cagrad")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--density", type=float, nargs="+", dest="densities", default=[0.6],
                   help="PSN trainable fraction(s) (default 0.6, the paper's rule for randomly "
                        "initialised models; it fine-tunes pre-trained ones at ~0.3)")
    p.add_argument("--k", type=int, help="PSN per-neuron K instead of --density")
    p.add_argument("--setting", action="append", dest="settings", choices=SETTINGS,
                   help="random (from scratch) and/or pretrained (default: both with "
                        "--pretrain, else random)")
    p.add_argument("--pretrain", metavar="ARGS",
                   help="flags for benchmarks/pretrain_encoder.py; the pretrained setting "
                        "fine-tunes its encoder (--backbone-weights)")
    p.add_argument("--epochs", type=int, help="epochs (default: the benchmark's)")
    p.add_argument("--max-steps", type=int)
    p.add_argument("--probe-every", type=int, default=1)
    p.add_argument("--probe", action="append", dest="probes",
                   help="extra probe for the MTL runs (repeatable), e.g. layer_conflict "
                        "(the conflict-over-depth figure)")
    p.add_argument("--train-arg", action="append",
                   help="extra flags for every mtlkit train call, e.g. \"--lr 1e-3\"")
    p.add_argument("--jobs", type=int, default=1, help="runs at once (each --threads 1)")
    p.add_argument("--out", default="runs/sparse_vs_dense", help="run folders")
    p.add_argument("--doc", default="docs/sparse-vs-dense.md", help="the Markdown report")
    p.add_argument("--plots", help="folder for the figures (default: <doc folder>/img)")
    p.add_argument("--format", default="png,pdf",
                   help="figure formats, comma-separated (the doc shows the PNG)")
    p.add_argument("--note", help="a paragraph quoted at the top of the report")
    p.add_argument("--discussion", metavar="FILE.md",
                   help="Markdown inserted after the tables (the written discussion)")
    p.add_argument("--dry-run", action="store_true", help="print the commands only")
    p.add_argument("--report-only", action="store_true",
                   help="run nothing; write the report from the finished runs")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    start = time.perf_counter()
    out, doc = Path(a.out), Path(a.doc)
    plots = Path(a.plots) if a.plots else doc.parent / "img"
    runner = Runner(a.dry_run or a.report_only, a.jobs)
    chosen = settings(a, out)
    if a.pretrain:
        pretrain(a, out, runner)
    stl = [item for s, folder, extra in chosen for bench in a.benchmarks
           for item in stl_runs(a, bench, folder, extra)]
    runner.batch(stl)
    if not a.dry_run and not a.report_only:
        for _, folder, _ in chosen:
            for bench in a.benchmarks:
                write_baselines(a, bench, folder)
    grid = {(s, bench): train_runs(a, bench, folder, extra)
            for s, folder, extra in chosen for bench in a.benchmarks}
    runner.batch([item for _, items in grid.values() for item in items])
    if a.dry_run:
        return 0
    elapsed = time.perf_counter() - start
    wall = report.protocol_wall(out, elapsed if runner.ran else 0.0)
    print(f"protocol wall time: this invocation {elapsed / 60:.1f} min, all invocations "
          f"that ran something {wall / 60:.1f} min", flush=True)
    report.write_doc(a, doc, plots, out, chosen, {k: v[0] for k, v in grid.items()},
                     runner.log, elapsed, wall)
    if runner.failed:
        print("failed runs:\n" + "\n".join(runner.failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
