"""pytest plugin of the aggregator property kit (auto-loaded through the ``pytest11`` entry
point when mtlkit is installed).

For a third-party aggregator, one line in a test file gives one test per check (base
guarantees and every claimed property), each reported separately::

    from mtlkit.testing.pytest_plugin import aggregator_suite
    test_my_aggregator = aggregator_suite(MyAggregator, max_examples=30)

The ``check_aggregator`` fixture gives :func:`mtlkit.testing.check_aggregator` to a test that
wants to call it itself. Command-line option ``--mtlkit-max-examples N`` overrides every
suite's example count (e.g. a long nightly run). Heavy imports (torch, hypothesis) happen only
when a suite runs, so the plugin costs nothing in unrelated projects.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

_MAX_EXAMPLES_OVERRIDE: list[int] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mtlkit")
    group.addoption("--mtlkit-max-examples", type=int, default=None,
                    help="hypothesis examples per aggregator property check (overrides suites)")


def pytest_configure(config: pytest.Config) -> None:
    n = config.getoption("--mtlkit-max-examples", default=None)
    _MAX_EXAMPLES_OVERRIDE[:] = [n] if n else []


def aggregator_suite(source: Any, *, max_examples: int = 25, checks: list[str] | None = None,
                     **options: Any) -> Callable[[str], None]:
    """A pytest test function parametrised over the checks that apply to ``source``.

    ``source``: an aggregator instance or zero-argument factory. ``checks``: restrict to these
    names. ``options`` go to :func:`mtlkit.testing.run_check`.
    """
    from mtlkit.testing import checks_for, run_check

    names = list(checks) if checks is not None else checks_for(source)

    @pytest.mark.parametrize("check", names)
    def test_aggregator_property(check: str) -> None:
        n = _MAX_EXAMPLES_OVERRIDE[0] if _MAX_EXAMPLES_OVERRIDE else max_examples
        run_check(source, check, max_examples=n, **options)

    return test_aggregator_property


@pytest.fixture
def check_aggregator() -> Callable[..., None]:
    """:func:`mtlkit.testing.check_aggregator`."""
    from mtlkit.testing import check_aggregator as check

    return check
