"""Search specs: TOML parsing, validation against TrainConfig and the plugin registry, expansion.

A spec has these tables (see docs/searches.md and the files in ``searches/``)::

    [search]      name, metric, mode, num_samples, scheduler, search_alg, cpus_per_trial,
                  gpus_per_trial, max_failures, max_concurrent, seed, stl, [search.asha],
                  [search.quick] (overrides for --quick: search keys and base/grid/space/variants)
    [base]        fixed TrainConfig keys (nested plugin tables allowed)
    [grid]        swept keys -> list of values (every combination is a trial)
    [variants.X]  named bundles of TrainConfig keys, one more axis (e.g. dense vs sparse)
    [space]       swept keys -> {uniform = [lo, hi]} | {loguniform = [lo, hi]} | {choice = [...]}
                  (search_alg = "optuna")
    [plugin_params.KIND.NAME]  parameters used whenever plugin NAME of KIND is selected

Swept keys may be dotted: ``aggregator_params.c``, ``mask_params.x``, ``benchmark_params.n``,
``probe_params.cosine.every``. Every problem is reported before Ray starts, as one line naming
the spec file, the table and the key.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import itertools
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

from mtlkit.config import FIELDS, TrainConfig, make_config, read_toml_file
from mtlkit.errors import ConfigError, MtlkitError
from mtlkit.plugins import PluginManager, get_plugin_manager

TOP_KEYS = ("search", "base", "grid", "variants", "space", "plugin_params")
MODES = ("min", "max")
SCHEDULERS = ("fifo", "asha")
SEARCH_ALGS = ("grid", "optuna")
DISTRIBUTIONS = ("uniform", "loguniform", "choice")
ASHA_KEYS = ("grace_period", "reduction_factor", "max_t")
QUICK_TABLES = ("base", "grid", "space", "variants")
# params table -> plugin kind; probe_params has one more level (the probe name)
PARAM_TABLES = {"aggregator_params": "aggregator", "mask_params": "mask",
                "benchmark_params": "benchmark", "probe_params": "probe"}
PLUGIN_FIELDS = {"aggregator": "aggregator_params", "mask": "mask_params",
                 "benchmark": "benchmark_params"}
# Metrics a trial reports (see runner.epoch_metrics); checked so a typo fails before Ray starts.
METRIC_PATTERN = re.compile(
    r"^(delta_m|delta_m_task_level|trainable_fraction|p_all_pct|p_last_half_pct"
    r"|p_trainable_all_pct|p_trainable_last_half_pct"
    r"|(val|test)\.\w+\.\w+|conflict\.\w+|train_loss\.\w+)$")


@attrs.frozen
class Distribution:
    """One Optuna search dimension: ``kind`` in DISTRIBUTIONS with its ``args``."""

    kind: str
    args: tuple[Any, ...]

    def representatives(self) -> list[Any]:
        """Values that must all give a valid config (range ends, every choice)."""
        return list(self.args)

    def to_tune(self) -> Any:
        from ray import tune

        if self.kind == "uniform":
            return tune.uniform(*self.args)
        if self.kind == "loguniform":
            return tune.loguniform(*self.args)
        return tune.choice(list(self.args))

    def describe(self) -> str:
        if self.kind == "choice":
            return "choice of " + ", ".join(repr(a) for a in self.args)
        return f"{self.kind}({self.args[0]!r}, {self.args[1]!r})"


@attrs.frozen
class Trial:
    """One expanded grid point: the swept values and the full TrainConfig dict."""

    index: int
    swept: dict[str, Any]
    values: dict[str, Any]

    @property
    def label(self) -> str:
        return ",".join(f"{k}={_short(v)}" for k, v in self.swept.items()) or "base"

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "label": self.label, "swept": self.swept,
                "values": self.values}


@attrs.frozen
class SearchSpec:
    """A validated search spec (``--quick`` overrides already applied)."""

    path: str
    name: str
    metric: str
    mode: str
    num_samples: int
    scheduler: str
    search_alg: str
    cpus_per_trial: float
    gpus_per_trial: float
    max_failures: int
    max_concurrent: int
    seed: int
    stl: bool
    asha: dict[str, Any]
    base: dict[str, Any]
    grid: dict[str, list[Any]]
    variants: dict[str, dict[str, Any]]
    space: dict[str, Distribution]
    plugin_params: dict[str, dict[str, dict[str, Any]]]
    quick: bool
    raw: dict[str, Any]

    @property
    def resources(self) -> dict[str, float]:
        res = {"cpu": self.cpus_per_trial}
        if self.gpus_per_trial:
            res["gpu"] = self.gpus_per_trial
        return res

    @property
    def swept_keys(self) -> list[str]:
        keys = list(self.grid)
        if self.variants:
            keys.insert(0, "variant")
        return keys + list(self.space)

    def trials(self) -> list[Trial]:
        """The grid trials (for Optuna: the single base trial the sampler varies)."""
        return list(_expand(self))

    def fingerprint(self) -> str:
        """Identifies the spec content, so ``--resume`` refuses a changed spec."""
        text = json.dumps(self.raw, sort_keys=True, default=str)
        return hashlib.sha256(f"{self.quick}:{text}".encode()).hexdigest()[:16]


# -- loading -------------------------------------------------------------------------------------


def load_spec(path: str | Path, *, quick: bool = False,
              plugins: PluginManager | None = None) -> SearchSpec:
    """Read, validate and expand a spec file; any problem raises one ConfigError line."""
    data = read_toml_file(path, "spec")
    return parse_spec(data, source=str(path), quick=quick, plugins=plugins)


def parse_spec(data: dict[str, Any], *, source: str = "spec", quick: bool = False,
               plugins: PluginManager | None = None) -> SearchSpec:
    err = _Errors(source)
    unknown = sorted(set(data) - set(TOP_KEYS))
    if unknown:
        raise err(f"unknown table {unknown[0]!r}; allowed: {', '.join(TOP_KEYS)}")
    for key in TOP_KEYS:
        if key in data and not isinstance(data[key], dict):
            raise err(f"[{key}] must be a table")
    data = _apply_quick(copy.deepcopy(data), err) if quick else copy.deepcopy(data)
    search = _parse_search(data.get("search", {}), err)
    base = copy.deepcopy(data.get("base", {}))
    for key in base:
        _check_key(key, "[base]", err, dotted=False)
    grid = _flatten_grid(data.get("grid", {}), "", err)
    variants = _parse_variants(data.get("variants", {}), err)
    space = _flatten_space(data.get("space", {}), "", err)
    plugin_params = _parse_plugin_params(data.get("plugin_params", {}), err)
    for key in grid:
        _check_key(key, "[grid]", err)
        if key in space:
            raise err(f"[grid] key {key!r} is also in [space]; sweep it in one of them")
    for key in space:
        _check_key(key, "[space]", err)
    if search["search_alg"] == "optuna":
        if not space:
            raise err("[space] is empty: search_alg = 'optuna' needs at least one "
                      "swept key, e.g. \"aggregator_params.c\" = {uniform = [0.0, 1.0]}")
        if grid or variants:
            raise err("[grid]/[variants] cannot be combined with search_alg = 'optuna' "
                      "(Optuna samples points itself); use {choice = [...]} in [space]")
        _require_optuna(err)
    elif space:
        raise err("[space] needs search_alg = 'optuna' in [search]; for a grid use [grid]")
    if search["scheduler"] == "asha" and base.get("eval_every", 1) != 1:
        raise err("[base] eval_every must be 1 with scheduler = 'asha' (it compares trials "
                  "on the validation metric every epoch)")
    spec = SearchSpec(path=source, base=base, grid=grid, variants=variants, space=space,
                      plugin_params=plugin_params, quick=quick, raw=data, **search)
    _validate_trials(spec, plugins or get_plugin_manager(), err)
    return spec


class _Errors:
    """Builds one-line ConfigErrors that start with the spec's file name."""

    def __init__(self, source: str) -> None:
        self.source = source

    def __call__(self, message: str) -> ConfigError:
        return ConfigError(f"{self.source}: {message}")


def _apply_quick(data: dict[str, Any], err: _Errors) -> dict[str, Any]:
    search = data.setdefault("search", {})
    quick = search.pop("quick", None)
    if quick is None:
        raise err("--quick needs a [search.quick] table in the spec")
    if not isinstance(quick, dict):
        raise err("[search.quick] must be a table")
    for table in QUICK_TABLES:
        if table in quick:
            override = quick.pop(table)
            if not isinstance(override, dict):
                raise err(f"[search.quick.{table}] must be a table")
            if table == "variants":
                data["variants"] = override
            elif table == "base":
                data["base"] = _deep_merge(data.get("base", {}), override)
            else:  # grid / space: a quick entry replaces the whole entry of the same key
                merged = dict(data.get(table, {}))
                merged.update(override)
                data[table] = merged
    for key, value in quick.items():
        if key not in _SEARCH_DEFAULTS and key != "asha":
            allowed = ", ".join([*_SEARCH_DEFAULTS, "asha", *QUICK_TABLES])
            raise err(f"unknown key {key!r} in [search.quick]; allowed: {allowed}")
        search[key] = value
    return data


# -- [search] --------------------------------------------------------------------------------

_SEARCH_DEFAULTS: dict[str, Any] = {
    "name": None, "metric": "val.mean.accuracy", "mode": "max", "num_samples": 1,
    "scheduler": "fifo", "search_alg": "grid", "cpus_per_trial": 1, "gpus_per_trial": 0,
    "max_failures": 2, "max_concurrent": 0, "seed": 0, "stl": False,
}


def _parse_search(table: dict[str, Any], err: _Errors) -> dict[str, Any]:
    allowed = [*_SEARCH_DEFAULTS, "asha", "quick"]
    for key in table:
        if key not in allowed:
            raise err(f"unknown key {key!r} in [search]; allowed: {', '.join(allowed)}")
    out = {**_SEARCH_DEFAULTS, **{k: v for k, v in table.items() if k not in ("asha", "quick")}}
    if out["name"] is None:
        out["name"] = Path(err.source).stem if err.source.endswith(".toml") else "search"
    if not isinstance(out["name"], str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", out["name"]):
        raise err(f"invalid [search] name={out['name']!r}: use letters, digits, '_', '-', '.'")
    if not isinstance(out["metric"], str) or not METRIC_PATTERN.match(out["metric"]):
        raise err(f"invalid [search] metric={out['metric']!r}: must be delta_m, "
                  "val.<task|mean>.<metric>, test.<task|mean>.<metric>, conflict.<key>, "
                  "p_all_pct or p_last_half_pct (e.g. val.mean.accuracy)")
    for key, choices in (("mode", MODES), ("scheduler", SCHEDULERS),
                         ("search_alg", SEARCH_ALGS)):
        if out[key] not in choices:
            raise err(f"invalid [search] {key}={out[key]!r}: must be one of "
                      f"{', '.join(choices)}")
    _int_at_least(out, "num_samples", 1, err)
    _int_at_least(out, "max_failures", -1, err, note=" (-1 retries forever)")
    _int_at_least(out, "max_concurrent", 0, err, note=" (0 means no limit)")
    _int_at_least(out, "seed", 0, err)
    if not isinstance(out["stl"], bool):
        raise err(f"invalid [search] stl={out['stl']!r}: must be true (train single-task "
                  "baselines first, for Δm) or false")
    for key, positive in (("cpus_per_trial", True), ("gpus_per_trial", False)):
        v = out[key]
        if not _is_number(v) or v < 0 or (positive and v == 0):
            bound = "> 0" if positive else ">= 0 (fractions such as 0.25 share a GPU)"
            raise err(f"invalid [search] {key}={v!r}: must be a number {bound}")
        if v > 1 and v != int(v):
            raise err(f"invalid [search] {key}={v!r}: fractions are allowed only below 1")
    asha = table.get("asha", {})
    if not isinstance(asha, dict):
        raise err("[search.asha] must be a table")
    for key in asha:
        if key not in ASHA_KEYS:
            raise err(f"unknown key {key!r} in [search.asha]; allowed: {', '.join(ASHA_KEYS)}")
        low = 2 if key == "reduction_factor" else 1
        _int_at_least(asha, key, low, err, table="search.asha")
    out["asha"] = dict(asha)
    return out


def _int_at_least(d: dict[str, Any], key: str, low: int, err: _Errors, note: str = "",
                  table: str = "search") -> None:
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise err(f"invalid [{table}] {key}={v!r}: must be an integer >= {low}{note}")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# -- keys, grid, space ---------------------------------------------------------------------------


def _check_key(key: str, where: str, err: _Errors, *, dotted: bool = True) -> None:
    parts = key.split(".")
    if parts[0] not in FIELDS:
        raise err(f"unknown key {key!r} in {where}; valid keys: {', '.join(FIELDS)}")
    if len(parts) == 1:
        return
    if not dotted or parts[0] not in PARAM_TABLES:
        raise err(f"invalid key {key!r} in {where}: only plugin parameter tables take a dotted "
                  f"key ({', '.join(PARAM_TABLES)}), e.g. aggregator_params.c")
    depth = 3 if parts[0] == "probe_params" else 2
    if len(parts) != depth:
        example = "probe_params.cosine.every" if depth == 3 else f"{parts[0]}.NAME"
        raise err(f"invalid key {key!r} in {where}: expected {example}")


def _flatten_grid(table: dict[str, Any], prefix: str, err: _Errors) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for key, value in table.items():
        full = prefix + key
        if isinstance(value, dict):
            out.update(_flatten_grid(value, full + ".", err))
        elif isinstance(value, list):
            if not value:
                raise err(f"[grid] key {full!r} is an empty list: give at least one value")
            out[full] = value
        else:
            raise err(f"[grid] key {full!r} must be a list of values, e.g. {full} = "
                      f"[{value!r}] (fixed values go in [base])")
    return out


def _flatten_space(table: dict[str, Any], prefix: str, err: _Errors
                   ) -> dict[str, Distribution]:
    out: dict[str, Distribution] = {}
    for key, value in table.items():
        full = prefix + key
        if not isinstance(value, dict):
            raise err(f"[space] key {full!r} must be a table such as {{uniform = [0.0, 1.0]}}, "
                      "{loguniform = [1e-4, 1e-2]} or {choice = [...]}")
        kinds = [k for k in value if k in DISTRIBUTIONS]
        if not kinds:
            out.update(_flatten_space(value, full + ".", err))
            continue
        if len(value) != 1:
            extra = sorted(set(value) - {kinds[0]})
            raise err(f"[space] key {full!r}: one distribution per key, got {kinds[0]!r} and "
                      f"{extra[0]!r}; allowed: {', '.join(DISTRIBUTIONS)}")
        kind, args = kinds[0], value[kinds[0]]
        if not isinstance(args, list) or not args:
            raise err(f"[space] key {full!r}: {kind} needs a non-empty list")
        if kind != "choice":
            ok = len(args) == 2 and all(_is_number(a) for a in args) and args[0] < args[1]
            if not ok or (kind == "loguniform" and args[0] <= 0):
                low = "0 < lo < hi" if kind == "loguniform" else "lo < hi"
                raise err(f"[space] key {full!r}: {kind} needs [lo, hi] with {low}, got {args!r}")
        out[full] = Distribution(kind, tuple(args))
    return out


def _parse_variants(table: dict[str, Any], err: _Errors) -> dict[str, dict[str, Any]]:
    for name, values in table.items():
        if not isinstance(values, dict):
            raise err(f"[variants.{name}] must be a table of TrainConfig keys")
        if not values:
            raise err(f"[variants.{name}] is empty: give the keys that define it")
        for key in values:
            _check_key(key, f"[variants.{name}]", err, dotted=False)
    return copy.deepcopy(table)


def _parse_plugin_params(table: dict[str, Any], err: _Errors
                         ) -> dict[str, dict[str, dict[str, Any]]]:
    kinds = ("aggregator", "mask", "benchmark", "probe")
    for kind, per_name in table.items():
        if kind not in kinds:
            raise err(f"unknown key {kind!r} in [plugin_params]; allowed: {', '.join(kinds)}")
        if not isinstance(per_name, dict) or not all(isinstance(v, dict)
                                                      for v in per_name.values()):
            raise err(f"[plugin_params.{kind}] must hold tables, e.g. "
                      f"[plugin_params.{kind}.NAME]")
    return copy.deepcopy(table)


# -- expansion -----------------------------------------------------------------------------------


def set_dotted(values: dict[str, Any], key: str, value: Any) -> None:
    """``set_dotted(d, 'aggregator_params.c', 0.4)`` sets ``d['aggregator_params']['c']``."""
    parts = key.split(".")
    node = values
    for part in parts[:-1]:
        child = node.get(part)
        node[part] = dict(child) if isinstance(child, dict) else {}
        node = node[part]
    node[parts[-1]] = value


def _deep_merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(a)
    for key, value in b.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def with_plugin_params(values: dict[str, Any],
                       plugin_params: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """Add ``[plugin_params.KIND.NAME]`` for the selected plugins; explicit keys win."""
    out = copy.deepcopy(values)
    defaults = attrs.fields_dict(TrainConfig)
    for kind, field in PLUGIN_FIELDS.items():
        name = out.get(kind, defaults[kind].default)
        extra = plugin_params.get(kind, {}).get(name)
        if extra:
            out[field] = {**extra, **out.get(field, {})}
    probe_extra = plugin_params.get("probe", {})
    if probe_extra:
        probes = out.get("probes", defaults["probes"].default.factory())
        for probe in probes:
            if probe in probe_extra:
                current = dict(out.get("probe_params", {}))
                current[probe] = {**probe_extra[probe], **current.get(probe, {})}
                out["probe_params"] = current
    return out


def _expand(spec: SearchSpec) -> Iterator[Trial]:
    axes: list[tuple[str, list[Any]]] = []
    if spec.variants:
        axes.append(("variant", list(spec.variants)))
    axes.extend(spec.grid.items())
    for index, point in enumerate(itertools.product(*(v for _, v in axes))):
        values = copy.deepcopy(spec.base)
        swept: dict[str, Any] = {}
        for (key, _), value in zip(axes, point):
            swept[key] = value
            if key == "variant":
                values = _deep_merge(values, spec.variants[value])
            else:
                set_dotted(values, key, value)
        yield Trial(index, swept, with_plugin_params(values, spec.plugin_params))


def _optuna_representatives(spec: SearchSpec) -> Iterator[Trial]:
    """Configs at the ends of every range and at every choice, to validate [space]."""
    for i in range(2):
        values = copy.deepcopy(spec.base)
        swept = {}
        for key, dist in spec.space.items():
            reps = dist.representatives()
            swept[key] = reps[min(i, len(reps) - 1)]
            set_dotted(values, key, swept[key])
        yield Trial(i, swept, with_plugin_params(values, spec.plugin_params))
    for key, dist in spec.space.items():
        if dist.kind == "choice":
            for j, choice in enumerate(dist.args):
                values = copy.deepcopy(spec.base)
                set_dotted(values, key, choice)
                yield Trial(j, {key: choice}, with_plugin_params(values, spec.plugin_params))


# -- validation ------------------------------------------------------------------------------


def _origin(spec: SearchSpec, trial: Trial, key: str) -> str:
    """Which table a key of a trial came from, for error messages."""
    for swept in trial.swept:
        if swept == key or swept.startswith(key + "."):
            return "[space]" if spec.space else "[grid]"
    variant = trial.swept.get("variant")
    if variant is not None and key in spec.variants.get(variant, {}):
        return f"[variants.{variant}]"
    if key in spec.base:
        return "[base]"
    return "(default)"


def _validate_trials(spec: SearchSpec, pm: PluginManager, err: _Errors) -> None:
    trials = (list(_optuna_representatives(spec)) if spec.space else spec.trials())
    if not trials:  # pragma: no cover - product of non-empty lists is non-empty
        raise err("the search has no trials")
    checked: set[str] = set()
    for trial in trials:
        try:
            config = make_config(trial.values, source="the spec")
        except ConfigError as exc:
            raise err(f"{exc} (trial {trial.label})") from None
        for kind, name, params, key in _plugin_uses(config):
            sig = json.dumps([kind, name, params], sort_keys=True, default=repr)
            if sig in checked:
                continue
            checked.add(sig)
            where = _origin(spec, trial, "probes" if kind == "probe" else kind)
            _check_plugin(pm, kind, name, params, where, key, err, trial)
    if spec.metric.startswith("delta_m") and not spec.stl:
        _check_baselines(spec, trials, pm, err)


def _plugin_uses(config: TrainConfig) -> Iterator[tuple[str, str, dict[str, Any], str]]:
    yield "benchmark", config.benchmark, dict(config.benchmark_params), "benchmark_params"
    yield "aggregator", config.aggregator, dict(config.aggregator_params), "aggregator_params"
    yield "mask", config.mask, config.mask_kwargs(), "mask_params"
    for probe in config.probes:
        yield "probe", probe, dict(config.probe_params.get(probe, {})), "probe_params"


def _check_plugin(pm: PluginManager, kind: str, name: str, params: dict[str, Any], where: str,
                  key: str, err: _Errors, trial: Trial) -> None:
    field = "probes" if kind == "probe" else kind
    try:
        reg = pm.registration(kind, name)
    except MtlkitError:
        names = pm.names(kind)
        raise err(f"{where} {field} = {name!r}: {kind} {name!r} is not installed; "
                  f"installed: {', '.join(names) or '(none)'} (see `mtlkit plugins`)") from None
    if kind == "benchmark":
        # Built in the trial only: a benchmark may load data in its constructor.
        _check_signature(reg.factory, params, kind, name, key, err, trial)
        return
    try:
        pm.create(kind, name, **params)
    except MtlkitError as exc:
        raise err(f"{key}: {exc} (trial {trial.label})") from None


def _check_signature(factory: Any, params: dict[str, Any], kind: str, name: str, key: str,
                     err: _Errors, trial: Trial) -> None:
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()):
        return
    accepted = [n for n, p in sig.parameters.items()
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                and n not in ("self", "seed", "data_root")]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise err(f"{key}: {kind} {name!r} has no parameter {unknown[0]!r}; parameters: "
                  f"{', '.join(accepted) or 'none'} (trial {trial.label})")


def _check_baselines(spec: SearchSpec, trials: list[Trial], pm: PluginManager,
                     err: _Errors) -> None:
    for trial in trials:
        if trial.values.get("baselines"):
            continue
        config = make_config(trial.values, source="the spec")
        bench = pm.create("benchmark", config.benchmark, **config.benchmark_params)
        if not bench.stl_baselines:
            raise err(f"[search] metric={spec.metric!r} needs single-task baselines, but "
                      f"benchmark {config.benchmark!r} ships none: set baselines = "
                      "\"stl.json\" in [base] (made by `mtlkit train --stl`), set "
                      "stl = true in [search], or use val.mean.<metric>")
        return


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _require_optuna(err: _Errors) -> None:
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise err("search_alg = 'optuna' needs optuna: pip install 'mtlkit[hpo]'") from None
