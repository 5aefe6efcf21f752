"""Property-testing kit for aggregators (yours or the bundled ones).

One call checks the base guarantees every aggregator must meet and every property it claims in
``properties``, on hypothesis-generated Jacobians (K up to 40, n up to 1e4, controlled rank and
conflict structure, zero/duplicated/collinear rows, scales 1e-8..1e8, float32 and float64)::

    from mtlkit.testing import check_aggregator
    check_aggregator(MyAggregator, max_examples=30)     # raises AssertionError on a violation

or, in a pytest file, one line (see :mod:`mtlkit.testing.pytest_plugin`)::

    from mtlkit.testing.pytest_plugin import aggregator_suite
    test_my_aggregator = aggregator_suite(MyAggregator)

A failure names the property, the shrunk (minimal) example as a rebuildable
:class:`~mtlkit.testing.strategies.JacobianRecipe`, and by how much the check missed.
The individual checks live in :mod:`mtlkit.testing.properties`, the strategies in
:mod:`mtlkit.testing.strategies`, the driver in :mod:`mtlkit.testing.suite`.

The names are imported lazily: the pytest plugin (auto-loaded wherever mtlkit is installed)
imports this package, and must not cost every unrelated pytest session a torch import.
"""

from __future__ import annotations

from typing import Any

__all__ = ["check_aggregator", "checks_for", "run_check"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from mtlkit.testing import suite

        return getattr(suite, name)
    raise AttributeError(f"module 'mtlkit.testing' has no attribute {name!r}")
