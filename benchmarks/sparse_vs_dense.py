#!/usr/bin/env python3
"""Dense vs sparse (PSN) training: the sparse-training paper's claim, measured with mtlkit.

The paper (arXiv 2411.18615) claims that training only a fixed per-neuron top-K subset of the
shared encoder lowers the incidence of gradient conflict p% and improves multi-task
performance (Δm), alone and with any aggregator. This script runs, for every benchmark,

* single-task baselines: ``mtlkit train --stl`` per seed (their mean over seeds is the Δm
  reference of that benchmark), then
* {dense, psn} x aggregators x seeds: ``mtlkit train ... --probe cosine --baselines ...``,

all with ``--threads 1``, then collects every ``results.json`` into a Markdown table (p% over
all steps and over the last 50% of training on the full shared gradient and on the trainable
coordinates, per-task metrics, Δm in both conventions; mean ± std over seeds), draws dense vs
sparse conflict curves with ``mtlkit plot conflict``'s code, and writes the report.

Every command is printed and listed in the report, so the table is reproducible by hand.
Finished runs (an existing ``results.json``) are reused: interrupt and re-run to continue.

Example (the documented pipeline check)::

    python benchmarks/sparse_vs_dense.py --benchmark multi_mnist --aggregator mean \\
        --seeds 0 1 2 --epochs 4 --out runs/sparse_vs_dense --doc docs/sparse-vs-dense.md
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "mtlkit.cli", *args]


def _show(cmd: list[str]) -> str:
    return "mtlkit " + " ".join(shlex.quote(a) for a in cmd[3:])


def run_cmd(cmd: list[str], log: list[str], dry: bool, done: bool = False) -> None:
    """Log the command (the report lists every one); run it unless done or a dry run."""
    text = _show(cmd)
    log.append(text)
    if done:
        return
    print("+ " + text, flush=True)
    if not dry:
        subprocess.run(cmd, check=True)


def common_args(a: argparse.Namespace, bench: str, seed: int) -> list[str]:
    args = ["--benchmark", bench, "--seed", str(seed), "--threads", "1", "--quiet"]
    if a.epochs:
        args += ["--epochs", str(a.epochs)]
    if a.max_steps:
        args += ["--max-steps", str(a.max_steps)]
    for extra in a.train_arg or []:
        args += shlex.split(extra)
    return args


def stl_baselines(a, bench: str, out: Path, log: list[str]) -> Path:
    """Per-seed STL runs; their per-metric mean over seeds is the benchmark's reference."""
    per_seed = []
    for seed in a.seeds:
        folder = out / bench / "stl" / f"seed{seed}"
        run_cmd(_cmd("train", "--stl", *common_args(a, bench, seed), "--out", str(folder)),
                log, a.dry_run, done=(folder / "stl_baselines.json").is_file())
        if not a.dry_run:
            per_seed.append(json.loads((folder / "stl_baselines.json").read_text()))
    path = out / bench / "stl_baselines.json"
    if not a.dry_run:
        mean = {t: {m: statistics.fmean(s[t][m] for s in per_seed) for m in per_seed[0][t]}
                for t in per_seed[0]}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(mean, indent=2) + "\n")
    return path


def arms(a) -> list[tuple[str, list[str]]]:
    """(label, mask flags): the dense baseline and PSN at the requested density or K."""
    psn = ["--mask", "psn"] + (["--k", str(a.k)] if a.k else ["--density", str(a.density)])
    return [("dense", ["--mask", "dense"]), ("psn", psn)]


def train_runs(a, bench: str, out: Path, baselines: Path, log: list[str]) -> list[Path]:
    folders = []
    for agg in a.aggregators:
        for arm, mask_flags in arms(a):
            for seed in a.seeds:
                folder = out / bench / agg / arm / f"seed{seed}"
                folders.append(folder)
                cmd = _cmd("train", *common_args(a, bench, seed), "--aggregator", agg,
                           *mask_flags, "--probe", "cosine", "--probe-every",
                           str(a.probe_every), "--baselines", str(baselines),
                           "--out", str(folder))
                run_cmd(cmd, log, a.dry_run, done=(folder / "results.json").is_file())
    return folders


def _stat(values: list[float | None], scale: float = 1.0, digits: int = 2) -> str:
    vals = [v * scale for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return "–"
    if len(vals) == 1:
        return f"{vals[0]:.{digits}f}"
    return f"{statistics.fmean(vals):.{digits}f} ± {statistics.stdev(vals):.{digits}f}"


def table(bench: str, folders: list[Path], out: Path) -> tuple[list[str], list[str]]:
    """Markdown rows for one benchmark; one row per (aggregator, arm), seeds aggregated."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for f in folders:
        r = json.loads((f / "results.json").read_text())
        arm = f.parent.name
        groups.setdefault((r["aggregator"], arm), []).append(r)
    first = next(iter(groups.values()))[0]
    metrics = [(t, m) for t, ms in first["tasks"].items() for m in ms if m != "loss"]
    head = ["method", "mask", "trainable", "p% all", "p% last 50%", "p% all (trainable)",
            "p% last 50% (trainable)", *[f"{t} {m}" for t, m in metrics],
            "Δm% metric-level ↓", "Δm% task-level ↑", "seeds", "s/run"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (agg, arm), rs in groups.items():
        c = [r.get("conflict") or {} for r in rs]
        cells = [agg, arm if arm == "dense" else f"{arm} (K={rs[0]['mask_info'].get('k')})",
                 _stat([r["trainable_fraction"] for r in rs], 100, 1) + "%",
                 _stat([x.get("incidence_all") for x in c], 100),
                 _stat([x.get("incidence_last_half") for x in c], 100),
                 _stat([x.get("incidence_trainable_all") for x in c], 100),
                 _stat([x.get("incidence_trainable_last_half") for x in c], 100),
                 *[_stat([r["tasks"][t][m] for r in rs], 100 if m == "accuracy" else 1)
                   for t, m in metrics],
                 _stat([r.get("delta_m") for r in rs]),
                 _stat([r.get("delta_m_task_level") for r in rs]),
                 str(len(rs)), _stat([r.get("wall_s") for r in rs], 1, 0)]
        lines.append("| " + " | ".join(cells) + " |")
    plots = []
    from mtlkit import plotting

    for agg in dict.fromkeys(k[0] for k in groups):
        runs = [f for f in folders if f.parent.parent.name == agg]
        png = out / f"sparse_vs_dense_{bench}_{agg}.png"
        plotting.plot_conflict(runs, png, title=f"{bench}, {agg}: conflict incidence, "
                                                f"dense vs PSN (mean over seeds)")
        plots.append(png)
    return lines, [str(p) for p in plots]


def write_doc(a, path: Path, sections: list[tuple[str, list[str], list[str], Path]],
              log: list[str], elapsed: float) -> None:
    import torch

    import mtlkit

    argv = " ".join(shlex.quote(x) for x in sys.argv[1:])
    doc = [
        "# Dense vs sparse (PSN) training: conflict incidence and Δm",
        "",
        "Generated by `benchmarks/sparse_vs_dense.py`; re-run the command below to reproduce it.",
        "",
        f"> {a.note}" if a.note else "",
        "",
        "```",
        f"python benchmarks/sparse_vs_dense.py {argv}",
        "```",
        "",
        f"mtlkit {mtlkit.__version__}, torch {torch.__version__}, CPU, `--threads 1`; "
        f"{len(a.seeds)} seeds ({', '.join(map(str, a.seeds))}); epochs "
        f"{a.epochs or 'benchmark default'}{f', max {a.max_steps} steps' if a.max_steps else ''}"
        f"; conflict observed every {a.probe_every} step(s); training time (sum of the runs' "
        f"`wall_s`, STL included) {elapsed / 60:.1f} min on a shared 2-core machine, so the "
        "s/run column is not a speed measurement.",
        "",
        "Columns: *p%* is the sparse-training paper's conflict incidence (share of task pairs "
        "with cos < 0 per observed step, averaged over all steps or over the last 50% of "
        "training), on the full shared gradient and on the trainable coordinates only (equal "
        "for dense). Task metrics are test-set values in % (accuracy) at the end of training. "
        "Δm% is computed against single-task baselines (`mtlkit train --stl`, same protocol, "
        "mean over the same seeds): metric-level (CAGrad/Nash-MTL/ST tables, lower is better) "
        "and Recon's task-level (higher is better); see docs/delta-m.md. Values are "
        "mean ± std over seeds.",
        "",
    ]
    for bench, lines, plots, base in sections:
        baselines = json.loads(base.read_text())
        doc += [f"## {bench}", "",
                "Single-task baselines (mean over seeds): " + ", ".join(
                    f"{t} {m} {v * (100 if m == 'accuracy' else 1):.2f}"
                    for t, ms in baselines.items() for m, v in ms.items()), "", *lines, ""]
        for p in plots:
            doc += [f"![conflict incidence {bench}]({os.path.relpath(p, path.parent)})", ""]
    doc += ["## The commands behind the table", "",
            "The script runs these (skipping finished ones); the STL baseline file of a "
            "benchmark is the per-metric mean of its seeds' `stl_baselines.json`.", "",
            "```", *log, "```", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(doc))
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--benchmark", action="append", dest="benchmarks", required=True,
                   help="benchmark name (repeatable)")
    p.add_argument("--aggregator", action="append", dest="aggregators", required=True,
                   help="aggregator name (repeatable), e.g. mean, pcgrad, cagrad")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--density", type=float, default=0.6,
                   help="PSN trainable fraction (default 0.6, the paper's rule for randomly "
                        "initialised models)")
    p.add_argument("--k", type=int, help="PSN per-neuron K instead of --density")
    p.add_argument("--epochs", type=int, help="epochs (default: the benchmark's)")
    p.add_argument("--max-steps", type=int)
    p.add_argument("--probe-every", type=int, default=1)
    p.add_argument("--train-arg", action="append",
                   help="extra flags for every mtlkit train call, e.g. \"--lr 1e-3\"")
    p.add_argument("--out", default="runs/sparse_vs_dense", help="run folders")
    p.add_argument("--doc", default="docs/sparse-vs-dense.md", help="the Markdown report")
    p.add_argument("--plots", help="folder for the PNGs (default: <doc folder>/img)")
    p.add_argument("--note", help="a line quoted at the top of the report")
    p.add_argument("--dry-run", action="store_true", help="print the commands only")
    a = p.parse_args(argv)
    out = Path(a.out)
    doc = Path(a.doc)
    plots = Path(a.plots) if a.plots else doc.parent / "img"
    log: list[str] = []
    sections = []
    for bench in a.benchmarks:
        baselines = stl_baselines(a, bench, out, log)
        folders = train_runs(a, bench, out, baselines, log)
        if not a.dry_run:
            lines, pngs = table(bench, folders, plots)
            sections.append((bench, lines, pngs, baselines))
            print("\n".join(lines))
    if not a.dry_run:
        # the runs' own wall times: re-running on finished folders must not report ~0 minutes
        walls = [json.loads(p.read_text()).get("wall_s") or 0.0
                 for p in out.glob("*/**/results.json")
                 if p.relative_to(out).parts[0] in a.benchmarks
                 and (p.parent.parent.parent.name in a.aggregators or "stl" in p.parts)]
        write_doc(a, doc, sections, log, sum(walls))
    return 0


if __name__ == "__main__":
    sys.exit(main())
