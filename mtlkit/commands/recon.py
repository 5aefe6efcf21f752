"""``mtlkit recon``: Recon (arXiv 2302.11289) as one resumable command.

Stages, each writing its artifact atomically into ``--out DIR`` and skipped when it is there:

1. **score**: a short joint-training run (``--score-aggregator``, default mean, dense) of the
   original model with the ``layer_conflict`` probe; ``DIR/conflict_scores.json`` lists every
   shared layer with its S-conflict score, ranked (the run itself is in ``DIR/score/``).
2. **select**: the top-K branchable layers (``--top-k``), or the best-ranked layers that fit a
   parameter budget (``--param-budget``), or ``--layers``; ``DIR/selection.json`` holds the
   chosen layers and the parameter counts before and after.
3. **baseline** (unless ``--no-baseline``): the full training of the *original* model with the
   chosen aggregator and mask, in ``DIR/baseline/``, measuring conflict on the layers that will
   stay shared.
4. **train**: the transform (plugin ``recon``) and the full training with the chosen aggregator
   and mask: ``DIR/results.json`` as for ``mtlkit train``, plus ``DIR/recon.json`` (also under
   ``results.json["recon"]``) comparing the conflict of the remaining shared layers with the
   baseline.

A killed run resumes where it stopped (training stages continue from their checkpoints).
``DIR/recon_plan.json`` records the inputs; re-running with different inputs is an error.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import attrs

from mtlkit.commands import train as train_cmd
from mtlkit.commands.train import config_values, default_out, print_summary
from mtlkit.config import TrainConfig, make_config
from mtlkit.errors import ConfigError, invalid_value
from mtlkit.plugins import PluginManager, get_plugin_manager
from mtlkit.results import jsonable, write_json

#: Recon's search settings per dataset [paper App. B]: (S, K, search length). The K values are
#: for the paper's backbones (ResNet18: 41 layers, SegNet: 52, MTAN: 72, MobileNetV2).
PAPER_SETTINGS: dict[str, dict[str, Any]] = {
    "multi_fashion_mnist": {"threshold": -0.1, "top_k": 25, "search": "30 of 120 epochs"},
    "cityscapes": {"threshold": 0.0, "top_k": 39, "search": "40 of 200 epochs"},
    "nyuv2": {"threshold": -0.02, "top_k": 22, "search": "40 of 200 epochs"},
    "pascal_context": {"threshold": -0.02, "top_k": 85, "search": "40 of 130 epochs"},
    "celeba": {"threshold": -0.05, "top_k": 25, "search": "2 of 5 epochs"},
}
#: Benchmarks without a paper setting use the setting of the closest paper dataset.
_CLOSEST = {"multi_mnist": "multi_fashion_mnist"}
DEFAULT_THRESHOLD = 0.0
DEFAULT_TOP_K = 1
#: the paper scores over the first 25% of training iterations (§5.2)
DEFAULT_SCORE_FRACTION = 0.25
#: config keys that do not change results (ignored when checking a re-run's inputs)
_RUNTIME_KEYS = ("threads", "workers")


def _train_parser() -> argparse.ArgumentParser:
    """``mtlkit train``'s parser: recon takes every training flag with the same meaning."""
    holder = argparse.ArgumentParser(add_help=False)
    return train_cmd.add_parser(holder.add_subparsers())


class _NotForRecon(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        parser.error(f"{option_string} is not a recon option: {self.help}")


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    # ``parents`` copies train's flags (including ones other plugins' branches add there);
    # ``resolve`` lets the few train-only flags below be redefined for recon.
    p = sub.add_parser(
        "recon", parents=[_train_parser()], conflict_handler="resolve",
        help="Recon: branch the most-conflicting shared layers, then train",
        description="Recon (ICLR 2023, arXiv 2302.11289): score shared layers by S-conflicts "
                    "in a short joint-training run, make the top-K task-specific, retrain with "
                    "any aggregator and mask. Resumable: re-running skips finished stages.")
    p.add_argument("--stl", nargs=0, action=_NotForRecon,
                   help="single-task baselines come from `mtlkit train --stl`; pass them with "
                        "--baselines")
    p.add_argument("--resume", action="store_true",
                   help="accepted for symmetry with train: recon always resumes a folder "
                        "holding a recon run with the same inputs")
    g = p.add_argument_group("recon")
    g.add_argument("--threshold", type=float, metavar="S",
                   help="S-conflict threshold in [-1, 1] (count cos < S; default: the paper's "
                        "value for the closest dataset, -0.1 for multi_mnist, else 0)")
    sel = g.add_mutually_exclusive_group()
    sel.add_argument("--top-k", type=int, metavar="K",
                     help=f"branch the K highest-scoring layers (default {DEFAULT_TOP_K})")
    sel.add_argument("--param-budget", type=float, metavar="FRACTION",
                     help="branch the best-ranked conflicting layers whose sizes sum to at most "
                          "FRACTION of the shared parameters")
    sel.add_argument("--layers", metavar="L1,L2",
                     help="branch exactly these layers (names as in conflict_scores.json)")
    length = g.add_mutually_exclusive_group()
    length.add_argument("--score-epochs", type=int, metavar="N",
                        help="length of the scoring run in epochs")
    length.add_argument("--score-steps", type=int, metavar="N",
                        help="length of the scoring run in steps (default: the first 25%% of "
                             "the final run's steps, as in the paper)")
    g.add_argument("--score-aggregator", metavar="NAME", default="mean",
                   help="aggregator of the scoring run (default mean = joint training)")
    g.add_argument("--score-every", type=int, metavar="N", default=1,
                   help="observe layer cosines every N steps of the scoring run (default 1)")
    g.add_argument("--no-baseline", action="store_true",
                   help="skip training the original model (no measured conflict reduction)")
    p.add_argument("--quiet", action="store_true", help="no progress line or summary")
    p.add_argument("--out", metavar="DIR", help="output folder (default runs/recon_<name>)")
    return p


@attrs.frozen(kw_only=True)
class ReconOptions:
    """The Recon-specific inputs of one ``mtlkit recon`` run (validated)."""

    threshold: float
    top_k: int | None = None
    param_budget: float | None = None
    layers: list[str] | None = None
    score_epochs: int | None = None
    score_steps: int | None = None
    score_aggregator: str = "mean"
    score_every: int = 1
    baseline: bool = True

    def __attrs_post_init__(self) -> None:
        t = self.threshold
        if not (isinstance(t, (int, float)) and math.isfinite(t) and -1 <= t <= 1):
            raise invalid_value("threshold", t, "must be a number in [-1, 1] (Recon's S)")
        if self.top_k is not None and self.top_k < 0:
            raise invalid_value("top_k", self.top_k, "must be an integer >= 0")
        b = self.param_budget
        if b is not None and not (math.isfinite(b) and 0 < b <= 1):
            raise invalid_value("param_budget", b, "must be in (0, 1] (a fraction of the "
                                                   "shared parameters)")
        for name in ("score_epochs", "score_steps", "score_every"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise invalid_value(name, v, "must be an integer >= 1")

    @property
    def selection(self) -> dict[str, Any]:
        if self.layers is not None:
            return {"method": "layers", "layers": self.layers}
        if self.param_budget is not None:
            return {"method": "param_budget", "param_budget": self.param_budget}
        return {"method": "top_k", "top_k": DEFAULT_TOP_K if self.top_k is None else self.top_k}


def default_threshold(benchmark: str) -> float:
    setting = PAPER_SETTINGS.get(_CLOSEST.get(benchmark, benchmark))
    return setting["threshold"] if setting else DEFAULT_THRESHOLD


def options_from_args(args: argparse.Namespace, benchmark: str) -> ReconOptions:
    layers = None
    if args.layers is not None:
        layers = [s.strip() for s in args.layers.split(",") if s.strip()]
    threshold = default_threshold(benchmark) if args.threshold is None else args.threshold
    return ReconOptions(threshold=threshold, top_k=args.top_k, param_budget=args.param_budget,
                        layers=layers, score_epochs=args.score_epochs,
                        score_steps=args.score_steps, score_aggregator=args.score_aggregator,
                        score_every=args.score_every, baseline=not args.no_baseline)


# -- the pipeline ---------------------------------------------------------------------------


class Recon:
    """Runs the stages of one ``mtlkit recon`` into ``out`` (see module docs)."""

    def __init__(self, config: TrainConfig, options: ReconOptions, out: str | Path, *,
                 plugins: PluginManager | None = None, progress: bool | None = None) -> None:
        self.config = config
        self.options = options
        self.out = Path(out)
        self.pm = plugins or get_plugin_manager()
        self.progress = progress
        self._started = time.monotonic()
        self.log: list[str] = []
        self._model = None

    # configs of the training stages -----------------------------------------------------------

    def score_config(self) -> TrainConfig:
        o, cfg = self.options, self.config
        same = o.score_aggregator == cfg.aggregator
        values: dict[str, Any] = {
            "aggregator": o.score_aggregator,
            "aggregator_params": dict(cfg.aggregator_params) if same else {},
            # Recon scores the architecture: dense joint training (paper §5.2)
            "mask": "dense", "mask_params": {}, "density": None, "k": None,
            "probes": ["layer_conflict"],
            "probe_params": {"layer_conflict": {"threshold": o.threshold,
                                                "every": o.score_every}},
            "probe_every": 1,
        }
        if o.score_epochs is not None:
            values.update(epochs=o.score_epochs, max_steps=None)
        elif o.score_steps is not None:
            values["max_steps"] = o.score_steps
        return attrs.evolve(cfg, **values)

    def compare_config(self, remaining: list[str]) -> TrainConfig:
        """The final (and baseline) config: the user's, plus the probes the comparison needs."""
        cfg = self.config
        probes = list(dict.fromkeys([*cfg.probes, "cosine", "layer_conflict"]))
        params = {k: dict(v) for k, v in cfg.probe_params.items()}
        layer = params.setdefault("layer_conflict", {})
        layer.update(threshold=self.options.threshold, subset=list(remaining))
        return attrs.evolve(cfg, probes=probes, probe_params=params)

    def plan(self) -> dict[str, Any]:
        def strip(cfg: TrainConfig) -> dict[str, Any]:
            d = cfg.to_dict()
            for key in _RUNTIME_KEYS:
                d.pop(key, None)
            return d

        return jsonable({"config": strip(self.config), "score_config": strip(self.score_config()),
                         "threshold": self.options.threshold,
                         "selection": self.options.selection,
                         "score_steps_default_fraction": DEFAULT_SCORE_FRACTION,
                         "baseline": self.options.baseline})

    def check_plan(self) -> None:
        path = self.out / "recon_plan.json"
        plan = json.loads(json.dumps(self.plan()))
        if path.is_file():
            old = json.loads(path.read_text(encoding="utf-8"))
            diff = _first_difference(old, plan)
            if diff is not None:
                key, was, now = diff
                raise ConfigError(f"{self.out} holds a recon run with {key}={was!r}, not "
                                  f"{now!r}; use a new --out (or delete {self.out}) to change "
                                  "the inputs")
            return
        write_json(path, plan)

    # stages -----------------------------------------------------------------------------------

    def _trainer(self, config: TrainConfig, out: Path, transform=None):
        from mtlkit.trainer import Trainer  # heavy imports only when training

        return Trainer(config, out, plugins=self.pm, progress=self.progress,
                       model_transform=transform)

    def build_model(self):
        """The benchmark's model for the configured tasks, as the Trainer builds it.

        Built once (creating the benchmark reads its data) and shared by the callers, which
        only read it: the recon transform works on a deep copy.
        """
        if self._model is None:
            import torch

            cfg = self.config
            bench = self.pm.create("benchmark", cfg.benchmark, seed=cfg.seed,
                                   data_root=cfg.data_root, **cfg.benchmark_params)
            names = cfg.tasks or [t.name for t in bench.tasks]
            torch.manual_seed(cfg.seed)
            self._model = bench.build_model(names)
        return self._model

    def score(self) -> dict[str, Any]:
        path = self.out / "conflict_scores.json"
        if path.is_file():
            self.log.append(f"score: done ({path})")
            return json.loads(path.read_text(encoding="utf-8"))
        from mtlkit_plugins.transforms.recon import shared_layers

        cfg = self.score_config()
        trainer = self._trainer(cfg, self.out / "score")
        o = self.options
        if o.score_epochs is None and o.score_steps is None:
            # the paper's default: the first 25% of the final run's iterations
            steps = max(1, math.ceil(DEFAULT_SCORE_FRACTION * trainer.total_steps))
            trainer.total_steps = steps
            trainer.config = attrs.evolve(trainer.config, max_steps=steps)
        results = trainer.fit(resume=True)
        summary = results["probes"]["layer_conflict"]
        transform = self.pm.create("transform", "recon")
        sizes = shared_layers(trainer.model)
        branchable = transform.candidates(trainer.model)
        scores = scores_document(summary, sizes, branchable)
        scores["score_run"] = {"dir": "score", "aggregator": cfg.aggregator,
                               "steps": results["steps"], "epochs": results["epochs"],
                               "every": o.score_every, "wall_s": results["wall_s"]}
        write_json(path, scores)
        self.log.append(f"score: {results['steps']} steps of {cfg.aggregator} -> {path}")
        return scores

    def select(self, scores: dict[str, Any]) -> dict[str, Any]:
        path = self.out / "selection.json"
        if path.is_file():
            self.log.append(f"select: done ({path})")
            return json.loads(path.read_text(encoding="utf-8"))
        from mtlkit.trainer import count_parameters

        model = self.build_model()
        layers = select_layers(scores, self.options)
        transformed = self.pm.create("transform", "recon", layers=layers)(model)
        shared_before = sum(p.numel() for _, p in model.shared_named_parameters())
        shared_after = sum(p.numel() for _, p in transformed.shared_named_parameters())
        before, after = count_parameters(model), count_parameters(transformed)
        sizes = {name: scores["layers"][name]["params"] for name in layers}
        selection = {
            **self.options.selection,
            "threshold": scores["threshold"],
            "layers": layers,
            "layer_params": sizes,
            "remaining_shared_layers": [n for n in scores["ranking_model_order"]
                                        if n not in layers],
            "tasks": list(model.task_names),
            "parameters": {
                "before": before, "after": after, "increase": after - before,
                "increase_fraction": (after - before) / before,
                "shared_before": shared_before, "shared_after": shared_after,
                "shared_fraction_branched": sum(sizes.values()) / shared_before,
            },
            "stream_mode": getattr(transformed, "mode", "identity"),
            "stream_mode_reason": getattr(transformed, "mode_reason", "no layer branched"),
        }
        write_json(path, selection)
        self.log.append(f"select: {len(layers)} layer(s) -> {path}")
        return selection

    def train(self, selection: dict[str, Any], *, baseline: bool) -> dict[str, Any]:
        out = self.out / "baseline" if baseline else self.out
        path = out / "results.json"
        name = "baseline" if baseline else "train"
        if path.is_file():
            self.log.append(f"{name}: done ({path})")
            return json.loads(path.read_text(encoding="utf-8"))
        cfg = self.compare_config(selection["remaining_shared_layers"])
        transform = None if baseline else \
            self.pm.create("transform", "recon", layers=selection["layers"])
        results = self._trainer(cfg, out, transform).fit(resume=True)
        self.log.append(f"{name}: {results['steps']} steps -> {path}")
        return results

    def preflight(self) -> None:
        """Reject a bad layer list or K before the (costly) scoring run."""
        o = self.options
        model = self.build_model()
        transform = self.pm.create("transform", "recon", layers=o.layers or [])
        if o.layers:
            transform(model)  # validates the names; the model is discarded
        n = len(transform.candidates(model))
        k = o.selection.get("top_k")
        if k is not None and k > n:
            raise invalid_value("top_k", k, f"the model has {n} shared layer(s) that can be "
                                            f"branched; use 0..{n}")

    def _stage(self, index: int, total: int, what: str) -> None:
        """One line per stage on stderr (elapsed since the start), unless quiet."""
        if self.progress is False:
            return
        elapsed = int(time.monotonic() - self._started)
        sys.stderr.write(f"recon stage {index}/{total} (elapsed {elapsed // 60}:{elapsed % 60:02d})"
                         f": {what}\n")
        sys.stderr.flush()

    def run(self) -> dict[str, Any]:
        self.preflight()
        self.out.mkdir(parents=True, exist_ok=True)
        self.check_plan()
        stages = 3 if self.options.baseline else 2
        self._stage(1, stages, "scoring layers by S-conflict (a short dense run)")
        scores = self.score()
        selection = self.select(scores)
        base = None
        if self.options.baseline:
            self._stage(2, stages, "training the baseline (no layer branched)")
            base = self.train(selection, baseline=True)
        self._stage(stages, stages, f"training with {len(selection)} branched layer(s)")
        results = self.train(selection, baseline=False)
        self._stage(stages, stages, "done")
        report = recon_report(scores, selection, results, base)
        write_json(self.out / "recon.json", report)
        results["recon"] = report
        write_json(self.out / "results.json", results)
        return results


# -- pure helpers (tested directly) ---------------------------------------------------------


def scores_document(summary: dict[str, Any], sizes: dict[str, int],
                    branchable: dict[str, int]) -> dict[str, Any]:
    """``conflict_scores.json`` from a ``layer_conflict`` probe summary.

    Layers are ranked by S-conflict count, descending; ties keep model order (a stable sort,
    as the reference code's ``sorted(..., reverse=True)`` on an ordered dict).
    """
    order = list(summary["layers"]) or list(sizes)
    counts = summary["s_conflict_counts"]
    ranking = sorted(order, key=lambda n: -counts.get(n, 0))
    pairs = summary.get("pairs_per_step", 0) * summary["observed_steps"]
    layers = {
        name: {"score": int(counts.get(name, 0)), "rank": ranking.index(name) + 1,
               "rate": counts.get(name, 0) / pairs if pairs else None,
               "mean_cosine": summary["mean_cosine"].get(name),
               "params": sizes.get(name), "branchable": name in branchable}
        for name in order
    }
    return {"threshold": summary["threshold"], "observed_steps": summary["observed_steps"],
            "pairs_per_step": summary.get("pairs_per_step"), "ranking": ranking,
            "ranking_model_order": order, "layers": layers}


def select_layers(scores: dict[str, Any], options: ReconOptions) -> list[str]:
    """Recon's selection (Alg. 1 step 3): the top-K branchable layers by score, or by budget."""
    info = scores["layers"]
    candidates = [n for n in scores["ranking"] if info[n]["branchable"]]
    if options.layers is not None:
        unknown = [n for n in options.layers if n not in info]
        if unknown:
            raise ConfigError(f"invalid layer {unknown[0]!r}: not a shared layer of the model; "
                              f"shared layers: {', '.join(info)}")
        return list(options.layers)
    if options.param_budget is not None:
        total = sum(v["params"] for v in info.values())
        budget = options.param_budget * total
        chosen, used = [], 0
        for name in candidates:
            # only layers that conflicted at least once; a layer that does not fit is skipped
            # and the next-ranked smaller one may still fit
            if info[name]["score"] > 0 and used + info[name]["params"] <= budget:
                chosen.append(name)
                used += info[name]["params"]
        return chosen
    k = options.selection["top_k"]
    if k > len(candidates):
        extra = len(info) - len(candidates)
        note = f" ({extra} other shared layer(s) cannot be branched)" if extra else ""
        raise invalid_value("top_k", k, f"the model has {len(candidates)} shared layer(s) that "
                                        f"can be branched{note}; use 0..{len(candidates)}")
    return candidates[:k]


def _rel_reduction(base: float | None, new: float | None) -> float | None:
    if base is None or new is None or base == 0:
        return None
    return 100.0 * (base - new) / base


def recon_report(scores: dict[str, Any], selection: dict[str, Any], results: dict[str, Any],
                 baseline: dict[str, Any] | None) -> dict[str, Any]:
    """``recon.json``: the choice, the parameter counts, and the measured conflict change."""

    def remaining(res: dict[str, Any] | None) -> dict[str, Any] | None:
        if res is None:
            return None
        summary = res.get("probes", {}).get("layer_conflict", {})
        sub = summary.get("subset")
        if sub is None:
            return None
        whole = res.get("probes", {}).get("cosine", {})
        return {**{k: v for k, v in sub.items() if k != "layers"},
                "observed_steps": summary.get("observed_steps"),
                "whole_shared_incidence_all": whole.get("incidence_all")}

    base_c, recon_c = remaining(baseline), remaining(results)
    keys = ("incidence_all", "incidence_last_half", "s_incidence_all", "layer_s_conflict_rate")
    reduction = None
    if base_c is not None and recon_c is not None:
        reduction = {k: _rel_reduction(base_c.get(k), recon_c.get(k)) for k in keys}
    report: dict[str, Any] = {
        "method": "recon (arXiv 2302.11289)",
        "threshold": scores["threshold"],
        "scores_file": "conflict_scores.json",
        "selection": {k: v for k, v in selection.items()
                      if k in ("method", "top_k", "param_budget")},
        "chosen_layers": selection["layers"],
        "chosen_scores": {n: scores["layers"][n]["score"] for n in selection["layers"]},
        "parameters": selection["parameters"],
        "stream_mode": selection["stream_mode"],
        "conflict_remaining_shared": {
            "layers": selection["remaining_shared_layers"],
            "definition": "incidence: share of task pairs with cos < 0 of the concatenated "
                          "gradient of the remaining shared layers; s_incidence: cos < S; "
                          "layer_s_conflict_rate: per-layer S-conflicts / (steps x pairs x "
                          "layers)",
            "baseline": base_c, "recon": recon_c,
            "relative_reduction_pct": reduction,
        },
        "tasks": {"recon": results.get("tasks"),
                  "baseline": baseline.get("tasks") if baseline else None},
    }
    dm = {"convention": results.get("delta_m_convention"),
          "recon": results.get("delta_m"),
          "baseline": baseline.get("delta_m") if baseline else None,
          "recon_task_level": results.get("delta_m_task_level"),
          "baseline_task_level": baseline.get("delta_m_task_level") if baseline else None}
    dm["change"] = (dm["recon"] - dm["baseline"]
                    if dm["recon"] is not None and dm["baseline"] is not None else None)
    report["delta_m"] = dm
    return report


def _first_difference(old: Any, new: Any, prefix: str = "") -> tuple[str, Any, Any] | None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in list(dict.fromkeys([*old, *new])):
            diff = _first_difference(old.get(key), new.get(key), f"{prefix}{key}.")
            if diff is not None:
                return diff
        return None
    return None if old == new else (prefix.rstrip(".").split(".", 1)[-1], old, new)


# -- the command ----------------------------------------------------------------------------


#: what ``mtlkit recon`` writes into its folder (``--overwrite`` removes exactly these)
OUTPUTS = ("recon_plan.json", "conflict_scores.json", "selection.json", "score", "baseline",
           "recon.json", *train_cmd.OUTPUTS)


def run(args: argparse.Namespace) -> int:
    values = config_values(args)
    config = make_config(values, source=args.config or "command line")
    options = options_from_args(args, config.benchmark)
    out = Path(args.out) if args.out else Path("runs") / f"recon_{default_out(values).name}"
    progress = False if args.quiet else None
    from mtlkit.rundir import open_run_dir

    # a folder holding a recon run resumes it (Recon.check_plan refuses other inputs); any
    # other non-empty folder is refused unless --overwrite
    resume = (out / "recon_plan.json").is_file()
    with open_run_dir(out, outputs=OUTPUTS, resume=resume and not args.overwrite,
                      overwrite=args.overwrite, command="recon"):
        results = Recon(config, options, out, progress=progress).run()
    if not args.quiet:
        print_summary(results, out)
        print_recon(results["recon"], out)
    return 0


def print_recon(report: dict[str, Any], out: Path) -> None:
    p = report["parameters"]
    print(f"  recon: S={report['threshold']}, branched {len(report['chosen_layers'])} layer(s): "
          f"{', '.join(report['chosen_layers']) or '(none)'}")
    print(f"  parameters: {p['before']} -> {p['after']} (+{p['increase']}, "
          f"{100 * p['increase_fraction']:.2f}%); shared parameters branched: "
          f"{100 * p['shared_fraction_branched']:.2f}%")
    c = report["conflict_remaining_shared"]
    if c["baseline"] is not None and c["recon"] is not None:
        b, r = c["baseline"], c["recon"]
        print(f"  conflict on the remaining shared layers (cos < 0): baseline "
              f"{b['incidence_all']:.3f} -> recon {r['incidence_all']:.3f}; per-layer "
              f"S-conflict rate {b['layer_s_conflict_rate']:.3f} -> "
              f"{r['layer_s_conflict_rate']:.3f}")
    dm = report["delta_m"]
    if dm["change"] is not None:
        print(f"  delta_m: baseline {dm['baseline']:+.2f}% -> recon {dm['recon']:+.2f}% "
              f"({dm['convention']}, lower is better)")
    print(f"  scores: {out / 'conflict_scores.json'}; report: {out / 'recon.json'}")
