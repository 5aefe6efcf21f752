"""The property kit catches broken aggregators and passes correct ones."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import torch
from hypothesis import given, settings
from mtlkit_plugins.aggregators.mean import Mean
from mtlkit_plugins.aggregators.upgrad import UPGrad

from mtlkit.aggregation import Aggregator, GramianWeighting, gramian_matrix
from mtlkit.testing import check_aggregator, checks_for, run_check
from mtlkit.testing.properties import check_non_conflicting, check_permutation_invariant
from mtlkit.testing.pytest_plugin import aggregator_suite
from mtlkit.testing.strategies import JacobianRecipe, jacobian_recipes


class MeanClaimingNonConflicting(Aggregator):
    """Claims non-conflicting but returns the mean."""

    properties: ClassVar[frozenset[str]] = frozenset({"non_conflicting"})

    def aggregate(self, J: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        return J.mean(0)


class ReturnsNaN(Aggregator):
    def aggregate(self, J: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        return torch.full((J.shape[1],), float("nan"), dtype=J.dtype)


class IndexWeighted(GramianWeighting):
    """Claims permutation invariance but weights rows by their index."""

    properties: ClassVar[frozenset[str]] = frozenset({"permutation_invariant", "weighted"})

    def weights(self, G: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        K = G.shape[0]
        return torch.arange(1, K + 1, dtype=torch.float64) / K


class Squared(Aggregator):
    """Claims positive homogeneity but is quadratic."""

    properties: ClassVar[frozenset[str]] = frozenset({"positively_homogeneous"})

    def aggregate(self, J: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        return J.mean(0) * J.abs().max()


class UnitDirections(Aggregator):
    """Sum of unit gradients: positively homogeneous only to degree 0, and not row-wise
    linear; claims row-wise linearity."""

    properties: ClassVar[frozenset[str]] = frozenset({"linear_under_scaling"})

    def aggregate(self, J: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        return (J / J.norm(dim=1, keepdim=True).clamp_min(1e-300)).sum(0)


class KeepsGraph(Aggregator):
    """Bypasses the base class and returns a result attached to J's graph."""

    def __call__(self, J: torch.Tensor, **context: Any) -> torch.Tensor:
        return J.mean(0) * 1.0


class SkipsNaNCheck(Aggregator):
    """Bypasses the base class's input validation and returns zeros on bad input."""

    def __call__(self, J: torch.Tensor, **context: Any) -> torch.Tensor:
        return torch.nan_to_num(J).mean(0)


class LeavesSpan(Aggregator):
    properties: ClassVar[frozenset[str]] = frozenset({"weighted"})

    def aggregate(self, J: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        return J.mean(0) + J.norm() * 0.1


class IgnoresContextGramian(UPGrad):
    """UPGrad that recomputes ``J J^T`` instead of using ``context['gramian']``."""

    def aggregate(self, J: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        return self.weights(gramian_matrix(J), context).to(J.dtype) @ J


SEEN: list[torch.Tensor] = []


class Recorder(Aggregator):
    """The mean; records every input it is called with."""

    properties: ClassVar[frozenset[str]] = frozenset({"permutation_invariant", "weighted"})

    def __call__(self, J: torch.Tensor, **context: Any) -> torch.Tensor:
        SEEN.append(J.clone())
        return super().__call__(J, **context)

    def aggregate(self, J: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        return J.mean(0)


@pytest.mark.parametrize(("cls", "check", "message"), [
    (MeanClaimingNonConflicting, "non_conflicting", "conflicts with task"),
    (ReturnsNaN, "structure", "non-finite"),
    (IndexWeighted, "permutation_invariant", "changed the direction"),
    (Squared, "positively_homogeneous", "differs from agg"),
    (UnitDirections, "linear_under_scaling", "differs from"),
    (KeepsGraph, "non_differentiable", "requires grad"),
    (SkipsNaNCheck, "non_finite", "did not raise GradientError"),
    (LeavesSpan, "weighted", "leaves the row span"),
    (IgnoresContextGramian, "gramian_context", "context Gramian is ignored"),
])
def test_broken_aggregator_is_caught_with_property_and_example(cls, check, message):
    with pytest.raises(AssertionError) as info:
        check_aggregator(cls, max_examples=20, max_dim=200, checks=[check])
    text = str(info.value)
    assert f"fails {check!r}" in text and message in text
    assert "minimal example: JacobianRecipe(" in text


def test_check_aggregator_lists_every_failing_property():
    with pytest.raises(AssertionError, match="1 of 8 checks failed") as info:
        check_aggregator(MeanClaimingNonConflicting, max_examples=15, max_dim=200)
    assert "non_conflicting" in str(info.value)


def test_correct_aggregators_pass_and_checks_follow_claims():
    check_aggregator(Mean, max_examples=10, max_dim=500)
    check_aggregator(UPGrad(), max_examples=5, max_dim=200, max_tasks=8)
    assert "conflict_only" in checks_for(UPGrad) and "conflict_only" not in checks_for(Mean)


def test_permutation_check_never_uses_the_identity():
    SEEN.clear()
    run_check(Recorder, "permutation_invariant", max_examples=30, max_tasks=2, max_dim=50)
    assert len(SEEN) == 60  # (permuted, original) per example
    for Jp, J in zip(SEEN[::2], SEEN[1::2]):
        if not torch.equal(J[0], J[1]):  # else every permutation gives the same J
            assert not torch.equal(Jp, J)


def test_weighted_check_draws_only_wide_jacobians():
    """With n <= K a full-rank J spans R^n: every direction would pass."""
    SEEN.clear()
    run_check(Recorder, "weighted", max_examples=30, max_tasks=12, max_dim=6)
    assert SEEN and all(J.shape[1] > J.shape[0] for J in SEEN)


def test_unknown_claims_are_rejected():
    class Bogus(Mean):
        properties: ClassVar[frozenset[str]] = frozenset({"fast"})

    with pytest.raises(AssertionError, match="unknown properties"):
        checks_for(Bogus)
    with pytest.raises(ValueError, match="unknown check"):
        run_check(Mean, "nonsense")


def test_checks_work_on_fixed_matrices_too():
    J = torch.tensor([[1.0, 0.0], [-0.5, 0.1]], dtype=torch.float64)  # mean·g_1 < 0
    with pytest.raises(AssertionError, match="conflicts with task 1"):
        check_non_conflicting(MeanClaimingNonConflicting(), J)
    check_non_conflicting(UPGrad(), J)
    with pytest.raises(AssertionError):
        check_permutation_invariant(IndexWeighted(), J, torch.tensor([1, 0]))


# The one-line third-party usage, collected by pytest as one test per check:
test_mean_suite = aggregator_suite(Mean, max_examples=5, max_dim=200)


@settings(max_examples=40, deadline=None, database=None, derandomize=True)
@given(recipe=jacobian_recipes(max_tasks=12, max_dim=300))
def test_strategies_build_what_the_recipe_says(recipe: JacobianRecipe):
    J = recipe.build()
    assert J.shape == (recipe.K, recipe.n) and J.dtype == recipe.dtype
    assert bool(torch.isfinite(J).all())
    Jd = J.double()
    if recipe.structure == "aligned":
        assert bool((Jd @ Jd.T >= 0).all())
    if recipe.structure == "low_rank":
        assert int(torch.linalg.matrix_rank(Jd, rtol=1e-5)) <= recipe.rank
    if recipe.structure == "zero_rows" and recipe.K >= 2:
        assert int((Jd.abs().sum(1) == 0).sum()) >= 1
    if recipe.structure == "duplicate" and recipe.K >= 2:
        assert int(torch.unique(Jd, dim=0).shape[0]) < recipe.K
    assert torch.equal(J, recipe.build())  # reproducible from the recipe
