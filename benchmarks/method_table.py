"""Print the method table at the top of docs/aggregators.md.

Usage (from the repository root)::

    .venv/bin/mtlkit bench aggregators --only latency --k 10 --n 1e5 --rounds 3 --json bench.json
    .venv/bin/python benchmarks/method_table.py bench.json > table.md

Read from the code, not typed: every registered aggregator (``mtlkit.list_plugins()``), its level
(``LossWeighting`` -> loss, ``GramianWeighting`` -> Gramian, else the class's ``requires``), its
``properties`` and the first link in its module docstring. Read from the bench JSON: the latency
(best of the rounds, ms). Typed here, because no code states them: the short citation, whether
the weights come from an iterative solver, and which peer library ships the method.
"""

from __future__ import annotations

import json
import re
import sys
import warnings

import mtlkit
from mtlkit.aggregation import GramianWeighting, LossWeighting
from mtlkit.plugins import get_plugin_manager

ABBREV = {"non_conflicting": "NC", "permutation_invariant": "PI",
          "positively_homogeneous": "PH", "linear_under_scaling": "LS", "weighted": "W",
          "conflict_only": "CO"}

# name: (short citation, iterative solver?, TorchJD, LibMTL)
META: dict[str, tuple[str, bool, str, str]] = {
    "aligned_mtl": ("Senushkin et al., CVPR 2023", False, "AlignedMTL", "Aligned_MTL"),
    "cagrad": ("Liu et al., NeurIPS 2021", True, "CAGrad", "CAGrad"),
    "config": ("Liu, Chu & Thuerey, ICLR 2025", False, "ConFIG", ""),
    "constant": ("fixed user weights", False, "Constant", ""),
    "cosmos": ("Ruchte & Grabocka, ICDM 2021", False, "COSMOS", ""),
    "cr_mogm": ("Zhou et al., NeurIPS 2022", False, "CRMOGMWeighting", ""),
    "db_mtl": ("Lin et al. 2023", False, "", "DB_MTL"),
    "dualproj": ("Quinton & Rey 2024", True, "DualProj", ""),
    "dwa": ("Liu et al., CVPR 2019", False, "", "DWA"),
    "excess_mtl": ("He et al., ICML 2024", False, "ExcessMTL", "ExcessMTL"),
    "fairgrad": ("Ban & Ji, ICML 2024", True, "FairGrad", "FairGrad"),
    "famo": ("Liu et al., NeurIPS 2023", False, "", "FAMO"),
    "gls": ("Chennupati et al., CVPRW 2019", False, "GeometricMean", "GLS"),
    "go4align": ("Shen et al., NeurIPS 2024", False, "", ""),
    "graddrop": ("Chen et al., NeurIPS 2020", False, "GradDrop", "GradDrop"),
    "gradnorm": ("Chen et al., ICML 2018", False, "GradNorm", "GradNorm"),
    "gradops": ("Zhu et al., WSDM 2025", False, "", ""),
    "gradvac": ("Wang et al., ICLR 2021", False, "GradVac", "GradVac"),
    "imtl": ("Liu et al., ICLR 2021 (IMTL)", False, "", "IMTL"),
    "imtl_g": ("Liu et al., ICLR 2021 (IMTL-G)", False, "IMTLG", "IMTL (part)"),
    "imtl_l": ("Liu et al., ICLR 2021 (IMTL-L)", False, "IMTLL", "IMTL (part)"),
    "krum": ("Blanchard et al., NeurIPS 2017", False, "Krum", ""),
    "mean": ("equal weights", False, "Mean", "EW"),
    "mgda": ("Sener & Koltun, NeurIPS 2018", True, "MGDA", "MGDA"),
    "mgda_ub": ("Sener & Koltun, NeurIPS 2018 (MGDA-UB)", True, "", "MGDA (rep_grad)"),
    "moco": ("Fernando et al., ICLR 2023", False, "MoCo", "MoCo"),
    "modo": ("Chen et al., NeurIPS 2023", False, "MoDoWeighting", "MoDo"),
    "nash_mtl": ("Navon et al., ICML 2022", True, "NashMTL", "Nash_MTL"),
    "pbi": ("Zhang & Li, IEEE TEC 2007", False, "PBI", ""),
    "pcd": ("Varam & AlHajri, TMLR 2026", True, "PCD", ""),
    "pcgrad": ("Yu et al., NeurIPS 2020", False, "PCGrad", "PCGrad"),
    "psmgd": ("Xu et al. 2024", True, "", ""),
    "rlw": ("Lin et al., TMLR 2022", False, "Random", "RLW"),
    "sdmgrad": ("Xiao et al., NeurIPS 2023", True, "SDMGradWeighting", "SDMGrad"),
    "stch": ("Lin et al., ICML 2024", False, "STCH", "STCH"),
    "sum": ("sum of the losses", False, "Sum", ""),
    "trimmed_mean": ("Yin et al., ICML 2018", False, "TrimmedMean", ""),
    "upgrad": ("Quinton & Rey 2024", True, "UPGrad", "UPGrad"),
    "uw": ("Kendall et al., CVPR 2018", False, "", "UW"),
    "uw_so": ("Kirchdorfer et al. 2024", False, "", ""),
}


def level(cls: type) -> str:
    if issubclass(cls, LossWeighting):
        return "loss"
    if issubclass(cls, GramianWeighting):
        return "Gramian"
    return {"jacobian": "Jacobian", "gramian": "Gramian", "losses": "loss"}.get(
        cls.requires, cls.requires)


def properties(name: str, cls: type) -> frozenset[str]:
    props = cls.__dict__.get("properties", getattr(cls, "properties", None))
    if isinstance(props, frozenset):
        return props
    return mtlkit.get_aggregator(name).properties  # computed per instance (e.g. PCGrad)


def paper_link(cls: type) -> str:
    doc = sys.modules[cls.__module__].__doc__ or ""
    found = re.search(r"https?://[^\s)`'\"]+", doc)
    return found.group(0).rstrip(".,;") if found else ""


def main(bench_json: str) -> None:
    with open(bench_json) as f:
        bench = json.load(f)
    ms = {row["method"]: row["best_ms"] for row in bench["aggregator_latency"]}
    floor = ms.get("gramian+combination")
    pm = get_plugin_manager()
    names = sorted(n for p in mtlkit.list_plugins() for n in p.provides.get("aggregator", ()))
    print("| method | level | paper | properties | ms (K=10, n=1e5) | TorchJD | LibMTL |")
    print("|---|---|---|---|---|---|---|")
    for name in names:
        factory = pm.registration("aggregator", name).factory
        # a factory function (not a class) is resolved through one default instance
        cls = factory if isinstance(factory, type) else type(mtlkit.get_aggregator(name))
        cite, iterative, tjd, lib = META.get(name, ("?", False, "?", "?"))
        link = paper_link(cls)
        paper = f"[{cite}]({link})" if link else cite
        props = " ".join(ABBREV[p] for p in ABBREV if p in properties(name, cls))
        cost = f"{ms[name]:.2f}" if name in ms else "–"
        if iterative:
            cost += " †"
        print(f"| `{name}` | {level(cls)} | {paper} | {props or '–'} | {cost} | "
              f"{tjd or '–'} | {lib or '–'} |")
    if floor is not None:
        print(f"\nFloor in the same run (`J Jᵀ` + one `wᵀ J`): {floor:.2f} ms.")


if __name__ == "__main__":
    warnings.filterwarnings("ignore")
    if len(sys.argv) != 2:
        sys.exit("usage: method_table.py BENCH_JSON")
    main(sys.argv[1])
