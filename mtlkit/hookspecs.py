"""The hooks a plugin may implement.

A plugin is a module (or object) with functions decorated by :data:`mtlkit.hookimpl`, registered
through the ``mtlkit`` entry-point group::

    [project.entry-points.mtlkit]
    my_plugin = "my_package.my_module"

Every registration hook receives a ``register`` callback and calls it once per component it
provides::

    from mtlkit import hookimpl

    @hookimpl
    def register_aggregators(register):
        register("my_method", MyAggregator)

``register(name, factory)`` takes a unique name (lower case, ``[a-z0-9_]``) and a callable that
builds the component from keyword parameters (usually the class itself). A name registered by
two plugins is an error naming both providers. Registration hooks are called once, when the
registry is first used; they must be cheap and must not import heavy optional dependencies
(import those inside the factory instead, so that a missing extra fails only for its user).

The bundled plugins in ``plugins/`` use exactly these hooks and are registered through the same
entry-point group: there is no private path for built-ins.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import pluggy

PROJECT_NAME = "mtlkit"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


class Register(Protocol):
    """The callback handed to every ``register_*`` hook."""

    def __call__(self, name: str, factory: Callable[..., Any]) -> None: ...


# ---------------------------------------------------------------------------------------------
# Gradient manipulation
# ---------------------------------------------------------------------------------------------


@hookspec
def register_aggregators(register: Register) -> None:
    """Register gradient aggregators.

    :param register: call ``register(name, factory)``; ``factory(**params)`` must return an
        :class:`mtlkit.aggregation.Aggregator`, a callable ``agg(J, **context) -> d`` mapping the
        ``[K, n]`` matrix of task gradients on the shared trainable coordinates to an ``[n]``
        update direction.

    Called once per registry load; every implementation is called (no ``firstresult``).
    """


# ---------------------------------------------------------------------------------------------
# Sparse training
# ---------------------------------------------------------------------------------------------


@hookspec
def register_mask_strategies(register: Register) -> None:
    """Register mask strategies (which shared coordinates are trainable).

    :param register: call ``register(name, factory)``; ``factory(**params)`` must return an
        :class:`mtlkit.masking.MaskStrategy` whose ``select`` returns one boolean tensor per
        shared parameter (``True`` = trainable).

    Called once per registry load; every implementation is called.
    """


# ---------------------------------------------------------------------------------------------
# Measurement
# ---------------------------------------------------------------------------------------------


@hookspec
def register_conflict_probes(register: Register) -> None:
    """Register conflict probes (measurements of the per-task gradients).

    :param register: call ``register(name, factory)``; ``factory(**params)`` must return an
        :class:`mtlkit.probing.ConflictProbe`. Probes observe, they never change the update.

    Called once per registry load; every implementation is called.
    """


# ---------------------------------------------------------------------------------------------
# Models and data
# ---------------------------------------------------------------------------------------------


@hookspec
def register_task_heads(register: Register) -> None:
    """Register task heads: a prediction module, its loss and its metrics.

    :param register: call ``register(name, factory)``; ``factory(**params)`` must return an
        :class:`mtlkit.tasks.TaskHead`.

    Called once per registry load; every implementation is called.
    """


@hookspec
def register_backbones(register: Register) -> None:
    """Register backbones (shared encoders and whole multi-task architectures).

    :param register: call ``register(name, factory)``; ``factory(**params)`` returns an
        ``nn.Module`` encoder mapping a batch to a shared representation. The benchmark decides
        how heads attach; a backbone declares its output size as ``out_features`` (flat
        representation) or ``out_channels`` (dense maps).

    Called once per registry load; every implementation is called.
    """


@hookspec
def register_benchmarks(register: Register) -> None:
    """Register benchmarks: datasets with their splits, tasks, default model and baselines.

    :param register: call ``register(name, factory)``; ``factory(**params)`` must return an
        :class:`mtlkit.benchmarks.Benchmark`. Parameters always accepted: ``data_root`` (a path
        or ``None``) and ``seed``.

    Called once per registry load; every implementation is called.
    """


@hookspec
def register_model_transforms(register: Register) -> None:
    """Register model transforms (e.g. Recon's layer branching).

    :param register: call ``register(name, factory)``; ``factory(**params)`` returns a callable
        ``transform(model, **kwargs) -> model`` acting on a
        :class:`mtlkit.models.MultiTaskModel`.

    Called once per registry load; every implementation is called.
    """
