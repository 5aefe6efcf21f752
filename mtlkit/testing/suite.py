"""The one-call driver of the property kit (re-exported by :mod:`mtlkit.testing`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch

from mtlkit.aggregation import PROPERTIES, Aggregator
from mtlkit.testing.properties import BASE, BASE_CHECKS, PROPERTY_CHECKS

__all__ = ["check_aggregator", "checks_for", "run_check"]

AggregatorSource = Aggregator | Callable[[], Aggregator]


def _instance(source: AggregatorSource) -> Aggregator:
    agg = source if isinstance(source, Aggregator) else source()
    if not callable(agg):
        raise TypeError(f"{source!r} did not give a callable aggregator")
    return agg


def checks_for(source: AggregatorSource) -> list[str]:
    """The names of the checks that apply: the base guarantees, then the claimed properties."""
    agg = _instance(source)
    claimed = set(getattr(agg, "properties", ()))
    unknown = claimed - PROPERTIES
    if unknown:
        raise AssertionError(f"{type(agg).__name__} claims unknown properties "
                             f"{sorted(unknown)}; known: {sorted(PROPERTIES)}")
    return [*BASE_CHECKS, *sorted(claimed)]


def run_check(
    source: AggregatorSource,
    check: str,
    *,
    max_examples: int = 25,
    max_tasks: int = 40,
    max_dim: int = 10_000,
    dtypes: Sequence[torch.dtype] | None = None,
    min_scale: float = 1e-8,
    max_scale: float = 1e8,
    derandomize: bool = True,
) -> None:
    """Run one named check with hypothesis; raise AssertionError with the minimal example."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from mtlkit.testing.strategies import DTYPES, STRUCTURES, jacobian_recipes, row_scalings

    agg = _instance(source)
    name = type(agg).__name__
    kwargs: dict[str, Any] = {"max_tasks": max_tasks, "max_dim": max_dim,
                              "dtypes": tuple(dtypes or DTYPES), "min_scale": min_scale,
                              "max_scale": max_scale}
    if check == "conflict_only":
        kwargs["structures"] = ("aligned",)
    elif check in ("single_task", "non_finite", "all_zero"):
        kwargs["structures"] = ("random",)
    else:
        kwargs["structures"] = STRUCTURES
    if check not in ("single_task",):
        kwargs["min_tasks"] = 2
    if check == "weighted":
        kwargs["wide"] = True  # n > K: otherwise a full-rank J spans R^n and nothing can fail
    if check in BASE:
        fn: Callable[..., Any] = BASE[check]
    elif check in PROPERTY_CHECKS:
        fn = PROPERTY_CHECKS[check]
    else:
        raise ValueError(f"unknown check {check!r}; known: "
                         f"{', '.join([*BASE_CHECKS, *sorted(PROPERTY_CHECKS)])}")

    extra = st.just({})
    if check == "positively_homogeneous":
        extra = st.fixed_dictionaries({"a": st.sampled_from([1e-3, 0.5, 3.0, 1e3])})
    elif check == "linear_under_scaling":
        extra = st.fixed_dictionaries({"scaling": row_scalings()})
    elif check == "permutation_invariant":
        extra = st.fixed_dictionaries({"perm_seed": st.integers(0, 2**16)})

    @settings(max_examples=max_examples, deadline=None, database=None,
              derandomize=derandomize, print_blob=False, report_multiple_bugs=False,
              suppress_health_check=list(HealthCheck))
    @given(recipe=jacobian_recipes(**kwargs), extra=extra)
    def prop(recipe: Any, extra: dict[str, Any]) -> None:
        J = recipe.build()
        # A factory gives a fresh instance per example: state sized for one K (learnable
        # per-task parameters, cached solver problems) must not leak into the next example.
        a = agg if isinstance(source, Aggregator) else _instance(source)
        args = dict(extra)
        if "perm_seed" in args:
            gen = torch.Generator().manual_seed(args.pop("perm_seed"))
            perm = torch.randperm(J.shape[0], generator=gen)
            if J.shape[0] >= 2 and torch.equal(perm, torch.arange(J.shape[0])):
                perm = perm.roll(1)  # the identity would test nothing (1 in 2 draws at K = 2)
            args["perm"] = perm
        if "scaling" in args:
            scaling = args.pop("scaling")
            args["c1"], args["c2"] = scaling.build(J.shape[0])
            args["alpha"], args["beta"] = scaling.alpha, scaling.beta
        try:
            fn(a, J, **args)
        except AssertionError as exc:
            raise AssertionError(f"{name} fails {check!r}: {exc}\n  minimal example: "
                                 f"{recipe}{' ' + str(extra) if extra else ''}") from None
        except Exception as exc:
            raise AssertionError(f"{name} raised {type(exc).__name__} during {check!r}: {exc}"
                                 f"\n  minimal example: {recipe}") from exc

    prop()


def check_aggregator(
    source: AggregatorSource,
    *,
    max_examples: int = 25,
    checks: Iterable[str] | None = None,
    **options: Any,
) -> None:
    """Check the base guarantees and every claimed property of an aggregator.

    ``source`` is an aggregator instance or a zero-argument factory (a class, a
    ``functools.partial``). ``checks`` restricts the run to some names of :func:`checks_for`.
    Other keyword options go to :func:`run_check` (``max_tasks``, ``max_dim``, ``dtypes``,
    ``min_scale``, ``max_scale``, ``derandomize``). All checks run; one AssertionError lists
    every failing property with its minimal example.
    """
    names = list(checks) if checks is not None else checks_for(source)
    failures = []
    for check in names:
        try:
            run_check(source, check, max_examples=max_examples, **options)
        except AssertionError as exc:
            failures.append(str(exc))
    if failures:
        raise AssertionError(f"{len(failures)} of {len(names)} checks failed:\n"
                             + "\n".join(f"- {f}" for f in failures))
