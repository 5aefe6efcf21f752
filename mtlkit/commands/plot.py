"""``mtlkit plot``: PNG charts of conflict measurements from run folders.

::

    mtlkit plot conflict RUN [RUN ...] --out incidence.png   # p% over training, dense vs sparse
    mtlkit plot layers RUN [RUN ...] --out layers.png        # per-layer conflict profile
"""

from __future__ import annotations

import argparse

from mtlkit.errors import ConfigError


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("plot", help="draw conflict charts from run folders",
                       description="Draw conflict charts (PNG) from mtlkit run folders.")
    kinds = p.add_subparsers(dest="chart", metavar="CHART", parser_class=type(p))
    c = kinds.add_parser("conflict", help="conflict incidence over training (probe cosine)",
                         description="Conflict incidence p% over training, one line per run "
                                     "label; runs with the same label (seeds) are averaged.")
    c.add_argument("runs", nargs="+", metavar="RUN", help="run folder (has steps.csv)")
    c.add_argument("--window", type=int, help="moving-average window in observed steps "
                                              "(default: 1/20 of the run)")
    layers = kinds.add_parser("layers", help="per-layer conflict profile (probe layer_conflict)",
                              description="Recon's per-layer S-conflict counts and mean "
                                          "cosines, runs side by side.")
    layers.add_argument("runs", nargs="+", metavar="RUN", help="run folder (has results.json)")
    for q in (c, layers):
        q.add_argument("--out", required=True, metavar="FILE.png", help="output PNG")
        q.add_argument("--label", action="append", dest="labels", metavar="TEXT",
                       help="legend label per run, in order (default: aggregator + mask)")
        q.add_argument("--title")
    return p


def run(args: argparse.Namespace) -> int:
    from mtlkit import plotting

    if args.chart is None:
        raise ConfigError("mtlkit plot needs a chart: conflict or layers")
    if args.chart == "conflict":
        if args.window is not None and args.window < 1:
            raise ConfigError(f"invalid --window={args.window}: must be an integer >= 1")
        path = plotting.plot_conflict(args.runs, args.out, labels=args.labels,
                                      window=args.window, title=args.title)
    else:
        path = plotting.plot_layer_profile(args.runs, args.out, labels=args.labels,
                                           title=args.title)
    print(f"wrote {path}")
    return 0
