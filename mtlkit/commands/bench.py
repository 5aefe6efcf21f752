"""``mtlkit bench aggregators``: aggregator latency, training-step cost and peak memory against
the honest K-backward floor (and TorchJD's engines when the ``torchjd`` extra is installed)."""

from __future__ import annotations

import argparse

from mtlkit.errors import ConfigError


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("bench", help="performance benchmarks",
                       description="Measure aggregator latency, training-step cost and "
                       "peak memory.")
    p.add_argument("what", choices=["aggregators"], help="what to benchmark")
    p.add_argument("--quick", action="store_true",
                   help="small sizes and few rounds (well under a minute)")
    p.add_argument("--methods", help="comma-separated aggregators (default: all registered)")
    p.add_argument("--k", help="task counts for aggregator latency (default 2,4,10,40)")
    p.add_argument("--n", help="coordinate counts for aggregator latency (default 1e5,1e6)")
    p.add_argument("--step-k", help="task counts for MLP training steps (default 2,4,10)")
    p.add_argument("--densities", help="trainable fractions for the sparse rows "
                   "(default 1,0.3,0.1)")
    p.add_argument("--workloads", help="lenet,mlp (default both)")
    p.add_argument("--rounds", type=int, help="interleaved timing rounds (medians over them)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default 2)")
    p.add_argument("--only", help="comma-separated parts: latency, steps, density, memory "
                   "(default all; memory runs one subprocess per step variant)")
    p.add_argument("--json", metavar="FILE", help="also write every figure to FILE")
    return p


def _ints(flag: str, text: str | None, *, minimum: int = 1) -> list[int] | None:
    if text is None:
        return None
    try:
        values = [int(float(part)) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or any(v < minimum for v in values):
        raise ConfigError(f"invalid {flag}={text!r}: must be comma-separated integers >= "
                          f"{minimum}, e.g. 2,4,10 or 1e5,1e6")
    return values


def _floats(flag: str, text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or any(not 0 < v <= 1 for v in values):
        raise ConfigError(f"invalid {flag}={text!r}: must be comma-separated fractions in (0, 1]")
    return values


def run(args: argparse.Namespace) -> int:
    from mtlkit.bench import Options, run_aggregators_bench

    overrides = {
        "methods": [m.strip() for m in args.methods.split(",") if m.strip()]
        if args.methods else None,
        "ks": _ints("--k", args.k),
        "ns": _ints("--n", args.n),
        "step_ks": _ints("--step-k", args.step_k),
        "densities": _floats("--densities", args.densities),
        "rounds": _ints("--rounds", None if args.rounds is None else str(args.rounds)),
        "threads": args.threads,
    }
    if overrides["rounds"] is not None:
        overrides["rounds"] = overrides["rounds"][0]
    if args.workloads:
        workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
        bad = [w for w in workloads if w not in ("lenet", "mlp")]
        if bad or not workloads:
            raise ConfigError(f"invalid --workloads={args.workloads!r}: must be lenet, mlp or "
                              "lenet,mlp")
        overrides["workloads"] = workloads
    if args.only:
        from mtlkit.bench import PARTS

        parts = [w.strip() for w in args.only.split(",") if w.strip()]
        bad = [w for w in parts if w not in PARTS]
        if bad or not parts:
            raise ConfigError(f"invalid --only={args.only!r}: must be a comma-separated subset "
                              f"of {', '.join(PARTS)}")
        overrides["parts"] = parts
    if args.quick:
        opts = Options.quick(**overrides)
    else:
        opts = Options(**{k: v for k, v in overrides.items() if v is not None})
    run_aggregators_bench(opts, json_path=args.json)
    return 0
