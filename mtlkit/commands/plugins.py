"""``mtlkit plugins``: every installed plugin, its distribution, version and what it registers."""

from __future__ import annotations

import argparse
import json
import warnings

import attrs

from mtlkit.plugins import get_plugin_manager


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("plugins", help="list installed plugins",
                       description="List installed plugins and what they register.")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    return p


def run(args: argparse.Namespace) -> int:
    pm = get_plugin_manager()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        infos = pm.plugins()
        conflicts = pm.conflicts()
    problems = [str(w.message) for w in caught]
    if args.json:
        print(json.dumps({"plugins": [attrs.asdict(i) for i in infos],
                          "conflicts": conflicts, "warnings": problems}, indent=2))
        return 0
    for info in infos:
        dist = f"{info.distribution} {info.version}" if info.distribution else "in code"
        print(f"{info.name}  ({dist})")
        if info.error:
            print(f"    FAILED: {info.error}")
        for kind, names in info.provides.items():
            print(f"    {kind}: {', '.join(names)}")
    for message in dict.fromkeys(problems + conflicts):
        print(f"warning: {message}")
    return 0
