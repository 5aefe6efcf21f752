"""mtlkit: multi-task learning under gradient conflict, as plugins.

The public Python API::

    import mtlkit
    agg = mtlkit.get_aggregator("mean")
    d = agg(J)                      # J: [K, n] task gradients -> d: [n]
    mtlkit.list_plugins()

    mtl = mtlkit.MTLBackward(model.encoder, aggregator="upgrad", optimizer=optimizer)
    report = mtl.backward(losses)   # any training loop: shared .grad aggregated, heads own

Components are looked up by name in the plugin registry (entry-point group ``mtlkit``); unknown
names raise :class:`mtlkit.errors.PluginError` listing the available ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from mtlkit.hookspecs import hookimpl
from mtlkit.plugins import PluginInfo, get_plugin_manager

__all__ = [
    "BackwardReport",
    "MTLBackward",
    "__version__",
    "get_aggregator",
    "get_backbone",
    "get_benchmark",
    "get_head",
    "get_mask",
    "get_probe",
    "get_transform",
    "hookimpl",
    "list_plugins",
    "mtl_backward",
]


if TYPE_CHECKING:
    from mtlkit.engine import BackwardReport, MTLBackward, mtl_backward

#: imported on first use: ``import mtlkit`` (and every CLI start) does not pay for torch
_ENGINE_NAMES = ("BackwardReport", "MTLBackward", "mtl_backward")


def __getattr__(name: str) -> Any:
    if name in _ENGINE_NAMES:
        from mtlkit import engine

        return getattr(engine, name)
    raise AttributeError(f"module 'mtlkit' has no attribute {name!r}")


def get_aggregator(name: str, **params: Any):
    """An aggregator ``agg(J, **context) -> d`` (see :mod:`mtlkit.aggregation`)."""
    return get_plugin_manager().create("aggregator", name, **params)


def get_mask(name: str, **params: Any):
    """A mask strategy (see :mod:`mtlkit.masking`)."""
    return get_plugin_manager().create("mask", name, **params)


def get_probe(name: str, **params: Any):
    """A conflict probe (see :mod:`mtlkit.probing`)."""
    return get_plugin_manager().create("probe", name, **params)


def get_head(name: str, **params: Any):
    """A task head (see :mod:`mtlkit.tasks`)."""
    return get_plugin_manager().create("head", name, **params)


def get_backbone(name: str, **params: Any):
    """A backbone (shared encoder module)."""
    return get_plugin_manager().create("backbone", name, **params)


def get_benchmark(name: str, **params: Any):
    """A benchmark (see :mod:`mtlkit.benchmarks`)."""
    return get_plugin_manager().create("benchmark", name, **params)


def get_transform(name: str, **params: Any):
    """A model transform (e.g. Recon's layer branching)."""
    return get_plugin_manager().create("transform", name, **params)


def list_plugins() -> list[PluginInfo]:
    """Every installed plugin: name, distribution, version, hooks, what it registers."""
    return get_plugin_manager().plugins()
