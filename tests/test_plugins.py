"""Registry behaviour users rely on: lookup, errors, duplicates, broken plugins, filters."""

from __future__ import annotations

import importlib.metadata as md
import sys
import types
import warnings

import pytest

import mtlkit
from mtlkit import hookimpl
from mtlkit.aggregation import Aggregator
from mtlkit.errors import ConfigError, PluginError
from mtlkit.masking import MaskStrategy
from mtlkit.plugins import (
    ALLOW_ENV,
    BLOCK_ENV,
    PluginLoadWarning,
    get_plugin_manager,
    reset_plugin_manager,
)

BUNDLED = {
    "aggregator": "mean",
    "mask": "dense",
    "probe": "cosine",
    "head": "classification",
    "backbone": "lenet",
    "benchmark": "multi_mnist",
}


class _Twice(Aggregator):
    def aggregate(self, J, context):
        return 2 * J.mean(0)


class _DuplicateMean:
    @hookimpl
    def register_aggregators(self, register):
        register("mean", _Twice)


def test_bundled_plugins_come_from_entry_points():
    eps = {ep.name: ep.value for ep in md.entry_points(group="mtlkit")}
    infos = {p.name: p for p in mtlkit.list_plugins()}
    for kind, name in BUNDLED.items():
        assert name in get_plugin_manager().names(kind)
    assert infos["mean"].distribution == "mtlkit"
    assert infos["mean"].provides == {"aggregator": ("mean",)}
    assert eps["mean"] == "mtlkit_plugins.aggregators.mean"


@pytest.mark.parametrize("kind", sorted(BUNDLED))
def test_unknown_name_lists_available(kind):
    getter = getattr(mtlkit, f"get_{kind}")
    with pytest.raises(PluginError) as err:
        getter("no_such_thing")
    assert "no_such_thing" in str(err.value)
    assert BUNDLED[kind] in str(err.value)


def test_unknown_parameter_names_accepted_ones():
    with pytest.raises(PluginError, match=r"no parameter 'foo'.*num_classes"):
        mtlkit.get_head("classification", num_classes=3, foo=1)


def test_invalid_parameter_value_is_config_error():
    with pytest.raises(ConfigError, match="num_classes"):
        mtlkit.get_head("classification", num_classes=1)


def test_duplicate_name_names_both_providers():
    pm = get_plugin_manager()
    with pm.temporary(_DuplicateMean(), name="dupe"), warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginLoadWarning)
        with pytest.raises(PluginError) as err:
            mtlkit.get_aggregator("mean")
        message = str(err.value)
        assert "'mean'" in message and "plugin 'mean'" in message and "plugin 'dupe'" in message
        assert "mtlkit 0.1.0" in message
        # other names keep working
        assert isinstance(mtlkit.get_mask("dense"), MaskStrategy)
        assert pm.conflicts()


def test_duplicate_is_reported_as_warning():
    pm = get_plugin_manager()
    with pm.temporary(_DuplicateMean(), name="dupe"), pytest.warns(PluginLoadWarning,
                                                                    match="registered twice"):
        pm.names("aggregator")


def _fake_entry_points(monkeypatch, extra):
    real = md.entry_points

    def entry_points(**kwargs):
        eps = list(real(**kwargs))
        if kwargs.get("group") == "mtlkit":
            eps += extra
        return eps

    monkeypatch.setattr(md, "entry_points", entry_points)


class _Dist:
    def __init__(self, name, version="9.9"):
        self.name = name
        self.version = version


def _entry_point(name, module, dist):
    ep = md.EntryPoint(name=name, value=module, group="mtlkit")
    return ep._for(_Dist(dist)) if hasattr(ep, "_for") else ep


def test_broken_plugin_warns_and_others_load(monkeypatch):
    _fake_entry_points(monkeypatch, [_entry_point("broken", "no_such_module_xyz", "brokendist")])
    with pytest.warns(PluginLoadWarning, match=r"broken.*brokendist.*ModuleNotFoundError"):
        names = get_plugin_manager().names("aggregator")
    assert "mean" in names
    info = {p.name: p for p in mtlkit.list_plugins()}["broken"]
    assert "ModuleNotFoundError" in info.error


def test_plugin_whose_hook_raises_is_reported(monkeypatch):
    module = types.ModuleType("mtlkit_test_raising_plugin")

    @hookimpl
    def register_aggregators(register):
        raise RuntimeError("boom")

    module.register_aggregators = register_aggregators
    monkeypatch.setitem(sys.modules, module.__name__, module)
    _fake_entry_points(monkeypatch, [_entry_point("raising", module.__name__, "raisingdist")])
    with pytest.warns(PluginLoadWarning, match=r"raising.*raisingdist.*boom"):
        names = get_plugin_manager().names("aggregator")
    assert "mean" in names


def test_block_env_var(monkeypatch):
    monkeypatch.setenv(BLOCK_ENV, "mean")
    assert "mean" not in get_plugin_manager().names("aggregator")
    assert "dense" in get_plugin_manager().names("mask")


def test_allow_env_var_by_entry_point(monkeypatch):
    monkeypatch.setenv(ALLOW_ENV, "dense, cosine")
    pm = get_plugin_manager()
    assert pm.names("mask") == ["dense"]
    assert pm.names("probe") == ["cosine"]
    assert pm.names("aggregator") == []


def test_allow_env_var_by_distribution(monkeypatch):
    # a plugin of another distribution: the allow-list by distribution must leave it out
    module = types.ModuleType("mtlkit_test_other_dist_plugin")

    @hookimpl
    def register_aggregators(register):
        register("foreign_agg", _Twice)

    module.register_aggregators = register_aggregators
    monkeypatch.setitem(sys.modules, module.__name__, module)
    _fake_entry_points(monkeypatch, [_entry_point("foreign", module.__name__, "otherdist")])
    assert "foreign_agg" in get_plugin_manager().names("aggregator")
    monkeypatch.setenv(ALLOW_ENV, "mtlkit")
    reset_plugin_manager()
    names = get_plugin_manager().names("aggregator")
    assert "mean" in names and "foreign_agg" not in names


def test_invalid_registered_name_is_rejected():
    class Bad:
        @hookimpl
        def register_aggregators(self, register):
            register("has space", _Twice)

    pm = get_plugin_manager()
    with pm.temporary(Bad(), name="bad"), pytest.warns(PluginLoadWarning, match="has space"):
        assert "mean" in pm.names("aggregator")
