"""``mtlkit search SPEC.toml --out DIR``: run a search spec with Ray Tune (DIR/summary.csv)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "search", help="run a search spec with Ray Tune",
        description="Run the trials of a TOML search spec (see searches/ and docs/searches.md) "
                    "with Ray Tune; writes DIR/summary.csv, DIR/summary.md and plots.")
    p.add_argument("spec", metavar="SPEC.toml", help="search spec")
    p.add_argument("--out", metavar="DIR", help="search folder (default runs/search/<name>)")
    p.add_argument("--address", metavar="ADDR",
                   help="attach to this Ray cluster (default: $RAY_ADDRESS, else an embedded "
                        "local Ray on all local CPUs)")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="continue an interrupted search in DIR (finished trials are kept)")
    again.add_argument("--overwrite", action="store_true",
                       help="delete an earlier search's outputs in DIR and start over (a "
                            "non-empty DIR is refused otherwise)")
    p.add_argument("--quick", action="store_true",
                   help="apply the spec's [search.quick] overrides (a tiny version)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the expanded trials and resources; run nothing")
    p.add_argument("--quiet", action="store_true", help="no per-trial lines or table")
    return p


def run(args: argparse.Namespace) -> int:
    from mtlkit.search import load_spec  # sets Ray's environment before ray is imported

    spec = load_spec(args.spec, quick=args.quick)
    out = Path(args.out) if args.out else Path("runs") / "search" / spec.name
    if args.dry_run:
        print_plan(spec, out)
        return 0
    from mtlkit.rundir import open_run_dir
    from mtlkit.search.report import write_reports
    from mtlkit.search.runner import run_search

    with open_run_dir(out, outputs=OUTPUTS, resume=args.resume, overwrite=args.overwrite,
                      command="search"):
        results = run_search(spec, out, address=args.address, resume=args.resume,
                             verbose=not args.quiet)
        written = write_reports(results, spec, out)
    failed = [r for r in written["rows"] if r["status"] == "error"]
    # Tune handles Ctrl-C itself (it saves its state and returns): trials left unfinished
    # without an early-stopping scheduler mean the search was interrupted
    unfinished = [r for r in written["rows"] if r["status"] == "not_started"
                  or (r["status"] == "stopped_early" and spec.scheduler == "fifo")]
    if not args.quiet:
        print(written["markdown"])
        note = quick_delta_m_note(spec, written["rows"])
        if note:
            print(note)
        for path in written["plots"]:
            print(f"plot: {path}")
        print(f"summary: {out / 'summary.csv'} ({len(written['rows'])} trials"
              + (f", {len(failed)} failed" if failed else "") + ")")
    if unfinished:
        print(f"mtlkit: interrupted: {len(unfinished)} of {len(written['rows'])} trials "
              f"unfinished; continue with --resume --out {out}", file=sys.stderr)
        return 130
    return 1 if failed else 0


#: what ``mtlkit search`` writes into its folder (``--overwrite`` removes exactly these)
OUTPUTS = ("search.json", "tune", "tune-state", "stl", "trials", "summary.csv", "summary.md",
           "*.png")


def quick_delta_m_note(spec, rows: list[dict]) -> str | None:
    """``--quick`` shortens training, but without ``stl = true`` Δm compares against
    baselines trained for the full budget (the benchmark's, or a ``baselines`` file): say so."""
    if not spec.quick or spec.stl:
        return None
    if not any(str(r.get("delta_m", "")).strip() not in ("", "None", "nan") for r in rows):
        return None
    return ("note: --quick trains for a shorter budget than the single-task baselines this "
            "delta_m is computed against, so it is not comparable to a full search's; set "
            "stl = true in [search] to train baselines with the same budget")


def print_plan(spec, out: Path) -> None:
    from mtlkit.search.runner import expected_trials

    res = f"{spec.cpus_per_trial:g} CPU" + (f", {spec.gpus_per_trial:g} GPU"
                                             if spec.gpus_per_trial else "")
    print(f"search {spec.name!r} from {spec.path}{' (quick)' if spec.quick else ''}: "
          f"{expected_trials(spec)} trials, {res} per trial, "
          f"max_concurrent={spec.max_concurrent or 'unlimited'}, scheduler={spec.scheduler}, "
          f"search_alg={spec.search_alg}, max_failures={spec.max_failures}, "
          f"metric={spec.metric} ({spec.mode}); out={out}")
    if spec.space:
        for key, dist in spec.space.items():
            print(f"  {key}: {dist.describe()}")
        print(f"  fixed: {spec.trials()[0].values}")
        return
    for trial in spec.trials():
        repeat = f" x{spec.num_samples}" if spec.num_samples > 1 else ""
        print(f"  {trial.index:3d}  {trial.label}{repeat}")
