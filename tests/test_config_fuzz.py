"""Config fuzzing: malformed TOML configs (wrong types, out-of-range values, unknown keys,
unknown plugins, missing files, broken syntax) give exactly one clear error line, exit code 2,
and write nothing."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtlkit.cli import main
from mtlkit.config import FIELDS

NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12)
JUNK = st.one_of(st.text(max_size=8), st.integers(-5, 5), st.floats(allow_nan=False,
                 allow_infinity=False, min_value=-1e3, max_value=1e3), st.booleans(),
                 st.lists(st.integers(-2, 2), max_size=3))

INT_KEYS = ("epochs", "max_steps", "batch_size", "probe_every", "eval_every", "k", "threads",
            "seed", "workers")
CHOICE_KEYS = ("optimizer", "jacobian", "nonfinite", "device", "mask_point")
PLUGIN_KEYS = ("aggregator", "mask", "benchmark")


def _bad_entry():
    return st.one_of(
        st.tuples(NAMES.filter(lambda k: k not in FIELDS), JUNK),              # unknown key
        st.tuples(st.sampled_from(INT_KEYS),                                   # wrong type/range
                  st.one_of(st.text(max_size=4), st.integers(-9, -1), st.booleans(),
                            st.floats(0.1, 9.9))),
        st.tuples(st.sampled_from(("lr", "density", "momentum", "weight_decay",
                                   "max_skipped_fraction")),
                  st.one_of(st.floats(-9, -0.01), st.text(max_size=3))),
        st.tuples(st.sampled_from(("density", "max_skipped_fraction")), st.floats(1.01, 99)),
        st.tuples(st.sampled_from(CHOICE_KEYS), NAMES.map(lambda s: s + "_x")),  # bad choice
        st.tuples(st.sampled_from(PLUGIN_KEYS), NAMES.map(lambda s: "no_" + s)),  # unknown plugin
        st.tuples(st.just("probes"), st.lists(NAMES.map(lambda s: "no_" + s), min_size=1,
                                              max_size=2)),
        st.tuples(st.just("tasks"), st.one_of(st.integers(), st.lists(st.integers(), min_size=1),
                                              st.lists(NAMES.map(lambda s: "no_" + s),
                                                       min_size=1))),
        st.tuples(st.sampled_from(("data_root", "baselines")),                 # missing files
                  NAMES.map(lambda s: f"/nonexistent/{s}")),
        st.tuples(st.just("aggregator_params"), st.dictionaries(NAMES, st.integers(), min_size=1)),
    )


def _toml_value(v) -> str:
    return json.dumps(v) if not isinstance(v, bool) else ("true" if v else "false")


def _write(path: Path, entries: list[tuple[str, object]], broken: bool) -> None:
    lines = [f"{k} = {_toml_value(v)}" if not isinstance(v, dict) else
             f"{k} = {{ " + ", ".join(f"{a} = {_toml_value(b)}" for a, b in v.items()) + " }"
             for k, v in dict(entries).items()]
    lines.append("benchmark_params = { n_train = 32, n_val = 16, n_test = 16 }")
    if broken:
        lines.append("this is = not = toml")
    path.write_text("\n".join(lines) + "\n")


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bad=st.lists(_bad_entry(), min_size=1, max_size=3), broken=st.booleans())
def test_malformed_config_is_one_line_exit_2_and_writes_nothing(bad, broken, capsys):
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "c.toml"
        _write(cfg, [*bad], broken)
        out = Path(tmp) / "out"
        code = main(["train", "--config", str(cfg), "--epochs", "1", "--max-steps", "1",
                     "--quiet", "--out", str(out)]) if not _overrides(bad) else \
            main(["train", "--config", str(cfg), "--quiet", "--out", str(out)])
        err = capsys.readouterr().err
        assert code == 2, (code, err, cfg.read_text())
        assert err.count("\n") == 1 and err.startswith("mtlkit: error: "), err
        assert "Traceback" not in err
        assert not out.exists()


def _overrides(bad) -> bool:
    """Flags would override a bad epochs/max_steps: then pass none."""
    return any(k in ("epochs", "max_steps") for k, _ in bad)


SEARCH_BAD = st.one_of(
    st.tuples(NAMES.filter(lambda k: k not in ("name", "metric", "mode", "num_samples",
                                               "scheduler", "search_alg", "cpus_per_trial",
                                               "gpus_per_trial", "max_failures",
                                               "max_concurrent", "seed", "stl", "asha",
                                               "quick")), JUNK),
    st.tuples(st.sampled_from(("num_samples", "max_concurrent", "seed")),
              st.one_of(st.integers(-9, -1), st.text(max_size=3), st.floats(0.1, 0.9))),
    st.tuples(st.sampled_from(("mode", "scheduler", "search_alg")), NAMES.map(lambda s: s + "_x")),
    st.tuples(st.sampled_from(("cpus_per_trial", "gpus_per_trial")),
              st.one_of(st.floats(-9, -0.01), st.text(max_size=3), st.floats(1.1, 1.9))),
    st.tuples(st.just("metric"), NAMES.map(lambda s: "bad." + s)),
    st.tuples(st.just("stl"), st.one_of(st.integers(), st.text(max_size=3))),
)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bad=SEARCH_BAD, grid_bad=st.booleans())
def test_malformed_search_spec_is_one_line_exit_2_and_writes_nothing(bad, grid_bad, capsys):
    key, value = bad
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "s.toml"
        grid = '["no_such_method"]' if grid_bad else '["mean"]'
        spec.write_text(f'[search]\n{key} = {_toml_value(value)}\n[grid]\naggregator = {grid}\n'
                        "[base]\nbenchmark_params = { n_train = 32, n_val = 16, n_test = 16 }\n")
        out = Path(tmp) / "out"
        code = main(["search", str(spec), "--out", str(out), "--dry-run"])
        err = capsys.readouterr().err
        assert code == 2, (code, err, spec.read_text())
        assert err.count("\n") == 1 and err.startswith("mtlkit: error: "), err
        assert not out.exists()
