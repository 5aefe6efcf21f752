"""Search overhead: the same N short trials through ``mtlkit search`` vs sequentially in-process.

    python benchmarks/search_overhead.py [--trials 8] [--epochs 4] [--n-train 8192]
                                         [--batch-size 64] [--repeat 1]

Both sides are timed as whole fresh processes (interpreter start, imports, and for the search
Ray start and stop), on the same trials (multi_mnist, mean/dense, seeds 0..N-1). The search uses
an embedded local Ray on all local CPUs with 1 CPU and 1 torch thread per trial; the sequential
baseline runs the trials one after another with 1 torch thread, like each trial
(``--seq-threads 0``: torch's default, all cores). Prints both wall times and
ratio = search / sequential (target on 2 CPUs: <= 0.65), and where the search's time went:
the seconds before its first trial started (Ray, Tune and worker start-up), its trials' mean
training time against the sequential one's (contention of parallel trials), and the seconds
after its last trial ended (Ray stop, reports). Not a test: numbers depend on the machine and
its load; run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPEC = """
[search]
name = "overhead"
cpus_per_trial = 1
max_failures = 0

[base]
benchmark = "multi_mnist"
epochs = {epochs}
batch_size = {batch_size}
probes = ["cosine"]
benchmark_params = {{ n_train = {n_train}, n_val = 512, n_test = 512 }}

[grid]
seed = {seeds}
"""


def sequential(spec_path: str, threads: int | None) -> None:
    """Run the spec's trials one after another in this process (the baseline)."""
    from mtlkit.config import make_config
    from mtlkit.search import load_spec
    from mtlkit.trainer import Trainer

    spec = load_spec(spec_path)
    with tempfile.TemporaryDirectory() as out:
        for trial in spec.trials():
            values = {**trial.values, "checkpoint": False}
            if threads:
                values["threads"] = threads
            config = make_config(values)
            results = Trainer(config, Path(out) / str(trial.index), progress=False).fit()
            print(f"wall_s {results['wall_s']}")


def timed(cmd: list[str]) -> tuple[float, float, str]:
    """(wall-clock start as time.time(), seconds taken, stdout) of a fresh process."""
    started, start = time.time(), time.perf_counter()
    proc = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
    return started, time.perf_counter() - start, proc.stdout


def search_phases(out: Path, started: float, took: float) -> tuple[float, float, float]:
    """(seconds before the first trial started, mean trial training s, seconds after the
    last trial ended), from the trials' attempts.jsonl and results.json."""
    starts, ends, walls = [], [], []
    for folder in (out / "trials").iterdir():
        first = json.loads((folder / "attempts.jsonl").read_text().splitlines()[0])
        wall = json.loads((folder / "results.json").read_text())["wall_s"]
        starts.append(first["time"])
        ends.append(first["time"] + wall)
        walls.append(wall)
    return min(starts) - started, statistics.fmean(walls), started + took - max(ends)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--n-train", type=int, default=8192)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=1, help="alternate runs; report each")
    parser.add_argument("--seq-threads", type=int, default=1,
                        help="torch threads of the sequential baseline (default 1, as each "
                             "search trial; 0 = torch's default, all cores)")
    parser.add_argument("--sequential", metavar="SPEC", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sequential:
        sequential(args.sequential, args.seq_threads or None)
        return 0
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    os.environ.update(env)
    with tempfile.TemporaryDirectory(prefix="mtlkit-overhead-") as tmp:
        spec = Path(tmp) / "overhead.toml"
        spec.write_text(SPEC.format(epochs=args.epochs, batch_size=args.batch_size,
                                    n_train=args.n_train, seeds=list(range(args.trials))))
        print(f"{args.trials} trials: multi_mnist, {args.epochs} epochs of {args.n_train} "
              f"images, batch {args.batch_size}; sequential threads: {args.seq_threads or 'all'}; "
              f"CPUs: {os.cpu_count()}; load average before: "
              f"{os.getloadavg()[0]:.2f}")
        for i in range(args.repeat):
            _, t_seq, printed = timed([sys.executable, __file__, "--sequential", str(spec),
                                       "--seq-threads", str(args.seq_threads)])
            seq_walls = [float(line.split()[1]) for line in printed.splitlines()
                         if line.startswith("wall_s ")]
            out = Path(tmp) / f"out{i}"
            started, t_search, _ = timed([sys.executable, "-m", "mtlkit.cli", "search",
                                          str(spec), "--quiet", "--out", str(out)])
            before, trial_s, after = search_phases(out, started, t_search)
            print(f"run {i + 1}: sequential in-process {t_seq:.1f} s, mtlkit search "
                  f"{t_search:.1f} s, ratio {t_search / t_seq:.2f} (target <= 0.65)")
            print(f"  search: {before:.1f} s before the first trial started, trials "
                  f"{trial_s:.1f} s each (sequential: {statistics.fmean(seq_walls):.1f} s), "
                  f"{after:.1f} s after the last trial ended")
    return 0


if __name__ == "__main__":
    sys.exit(main())
