"""``mtlkit plot``: print-ready charts of conflict measurements from run folders.

::

    mtlkit plot conflict RUN [RUN ...] --out incidence.png   # p% over training, dense vs sparse
    mtlkit plot layers RUN [RUN ...] --out layers.png        # per-layer profile, runs side by side
    mtlkit plot depth RUN [RUN ...] --out depth.png          # conflict over depth, seeds averaged

``--format png,pdf,svg`` (the default) writes every format next to ``--out`` (PNG at 300 dpi).
"""

from __future__ import annotations

import argparse

from mtlkit.errors import ConfigError


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("plot", help="draw conflict charts from run folders",
                       description="Draw print-ready conflict charts (PNG, PDF, SVG) from "
                                   "mtlkit run folders.")
    kinds = p.add_subparsers(dest="chart", metavar="CHART", parser_class=type(p))
    c = kinds.add_parser("conflict", help="conflict incidence over training (probe cosine)",
                         description="Conflict incidence p% over training, one line per run "
                                     "label; runs with the same label (seeds) give the mean "
                                     "line and a ± std band.")
    c.add_argument("runs", nargs="+", metavar="RUN", help="run folder (has steps.csv)")
    c.add_argument("--window", type=int, help="moving-average window in observed steps "
                                              "(default: 1/20 of the run)")
    layers = kinds.add_parser("layers", help="per-layer conflict profile (probe layer_conflict)",
                              description="Recon's per-layer S-conflict counts and mean "
                                          "cosines, runs side by side.")
    layers.add_argument("runs", nargs="+", metavar="RUN", help="run folder (has results.json)")
    depth = kinds.add_parser("depth", help="conflict over depth (probe layer_conflict)",
                             description="Per-layer conflict rate and mean cosine in model "
                                         "order; runs with the same label (seeds) give the "
                                         "mean line and a ± std band.")
    depth.add_argument("runs", nargs="+", metavar="RUN", help="run folder (has results.json)")
    for q in (c, layers, depth):
        q.add_argument("--out", required=True, metavar="FILE",
                       help="output file; its suffix (.png, .pdf, .svg, or none) is replaced "
                            "by each --format")
        q.add_argument("--format", default="png,pdf,svg", metavar="LIST",
                       help="comma-separated subset of png,pdf,svg (default: all three)")
        q.add_argument("--label", action="append", dest="labels", metavar="TEXT",
                       help="legend label per run, in order (default: aggregator + mask)")
        q.add_argument("--title")
    return p


def run(args: argparse.Namespace) -> int:
    from mtlkit import plotting

    if args.chart is None:
        raise ConfigError("mtlkit plot needs a chart: conflict, layers or depth")
    formats = plotting.parse_formats(args.format)
    common = {"labels": args.labels, "title": args.title, "formats": formats}
    if args.chart == "conflict":
        if args.window is not None and args.window < 1:
            raise ConfigError(f"invalid --window={args.window}: must be an integer >= 1")
        first = plotting.plot_conflict(args.runs, args.out, window=args.window, **common)
    elif args.chart == "layers":
        first = plotting.plot_layer_profile(args.runs, args.out, **common)
    else:
        first = plotting.plot_conflict_depth(args.runs, args.out, **common)
    for fmt in formats:
        print(f"wrote {first.with_suffix('.' + fmt)}")
    return 0
