"""CR-MOGM: exponential moving average of another weighting's task weights.

Zhou, Zhang, Jiang, Zhong, Gu & Zhu, "On the Convergence of Stochastic Multi-Objective Gradient
Manipulation and Beyond", NeurIPS 2022,
https://papers.neurips.cc/paper_files/paper/2022/hash/f91bd64a3620aad8e70a27ad9cb3ca57-Abstract-Conference.html.

Any method whose direction is ``d = w^T J`` (MGDA, UPGrad, PCGrad-as-weights, IMTL-G, ...)
computes ``\\hat w_t`` from the current *stochastic* gradients only; the paper shows such
methods can fail to converge to Pareto-optimal points and fixes it by averaging the weights:

.. math:: \\lambda_t = \\beta\\, \\lambda_{t-1} + (1 - \\beta)\\, \\hat w_t, \\qquad
          \\lambda_0 = \\tfrac1K \\mathbf 1, \\qquad d_t = \\lambda_t^\\top J_t .

``inner`` names any registered *weighting* (a :class:`~mtlkit.aggregation.GramianWeighting` or
:class:`~mtlkit.aggregation.LossWeighting`), built with ``inner_params`` through the plugin
manager: ``cr_mogm(inner="upgrad", beta=0.9)``. The wrapper rides the inner method's path: a
Gramian weighting stays Gramian-level, a loss weighting loss-level (its learnable parameters,
e.g. UW's, are forwarded). An unknown name, a method that is not a weighting (GradDrop, Krum's
coordinate-wise peers, ...) or one that needs the post-step losses (FAMO) is a
:class:`~mtlkit.errors.ConfigError`.

``beta`` is the weight on the *previous* weights (Adam's ``β₁`` convention; ``0`` gives the inner
method, ``1`` freezes ``λ`` at uniform). TorchJD's ``CRMOGMWeighting`` calls it ``alpha`` with the
same meaning, default 0.1 in its signature; 0.9 here. The paper's Corollary 1 lets the
coefficient on the previous weights grow towards 1 as the learning rate decays; change
``beta`` between steps for such a schedule. LibMTL has no CR-MOGM.

Stateful (``λ``; :meth:`reset` restarts from uniform and resets the inner method). A change of
``K`` restarts ``λ``.

Properties: weighted. Permutation invariance and homogeneity hold when the inner method has
them (same history), but are not claimed for every inner method; non-conflict does not carry
over (``λ_{t-1}`` was computed for other gradients).
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
import torch
from mtlkit_plugins.aggregators._solvers import check_range

from mtlkit import hookimpl
from mtlkit.aggregation import Aggregator, GramianWeighting, LossWeighting
from mtlkit.errors import ConfigError


def _weightings() -> list[str]:
    from mtlkit.plugins import get_plugin_manager

    pm = get_plugin_manager()
    out = []
    for name in pm.names("aggregator"):
        factory = pm.registration("aggregator", name).factory
        if (isinstance(factory, type) and issubclass(factory, (GramianWeighting, LossWeighting))
                and not factory.needs_losses_after):
            out.append(name)
    return out


def _build_inner(inner: object, params: object) -> Aggregator:
    from mtlkit.plugins import get_plugin_manager

    if not isinstance(inner, str):
        raise ConfigError(f"cr_mogm: inner={inner!r} must be the name of a registered weighting")
    if params is not None and not isinstance(params, dict):
        raise ConfigError(f"cr_mogm: inner_params={params!r} must be a dict of parameters")
    pm = get_plugin_manager()
    if inner.lower() not in pm.names("aggregator"):
        raise ConfigError(f"cr_mogm: unknown inner method {inner!r}; weightings: "
                          f"{', '.join(_weightings())}")
    agg = pm.create("aggregator", inner, **(params or {}))
    if not isinstance(agg, (GramianWeighting, LossWeighting)):
        raise ConfigError(f"cr_mogm: inner method {inner!r} is not a weighting (its direction is "
                          f"not w^T J with weights it exposes); weightings: "
                          f"{', '.join(_weightings())}")
    if agg.needs_losses_after:
        raise ConfigError(f"cr_mogm: inner method {inner!r} needs the losses after the step; "
                          "it cannot be wrapped")
    return agg


@attrs.define(eq=False)
class _CRMOGM:
    """Shared state and smoothing of the two CR-MOGM levels."""

    inner: str = "upgrad"
    beta: float = 0.9
    inner_params: dict[str, Any] | None = None
    _inner: Aggregator = attrs.field(init=False, repr=False)
    _lambda: torch.Tensor | None = attrs.field(init=False, default=None, repr=False)

    properties: ClassVar[frozenset[str]] = frozenset({"weighted"})
    stateful: ClassVar[bool] = True
    transient_state: ClassVar[frozenset[str]] = frozenset({"_inner"})

    def smooth(self, w_hat: torch.Tensor) -> torch.Tensor:
        w_hat = w_hat.detach().to(device="cpu", dtype=torch.float64)
        K = w_hat.numel()
        if self._lambda is None or self._lambda.numel() != K:
            self._lambda = torch.full((K,), 1.0 / K, dtype=torch.float64)
        self._lambda = self.beta * self._lambda + (1.0 - self.beta) * w_hat
        return self._lambda.clone()

    def reset(self) -> None:
        self._lambda = None
        self._inner.reset()

    def configure(self, num_tasks: int) -> None:
        self._inner.configure(num_tasks)

    def parameters(self) -> list[torch.Tensor]:
        return self._inner.parameters()

    def after_step(self, context: dict[str, Any]) -> None:
        self._inner.after_step(context)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "inner_state": self._inner.state_dict()}  # type: ignore[misc]

    def load_state_dict(self, state: dict[str, Any]) -> None:
        state = dict(state)
        self._inner.load_state_dict(state.pop("inner_state", {}))
        super().load_state_dict(state)  # type: ignore[misc]


@attrs.define(eq=False)
class CRMOGMGramian(_CRMOGM, GramianWeighting):
    """CR-MOGM around a Gramian weighting (stays on the Gramian path)."""

    def weights(self, G: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        return self.smooth(self._inner.weights(G, context))  # type: ignore[attr-defined]


@attrs.define(eq=False)
class CRMOGMLoss(_CRMOGM, LossWeighting):
    """CR-MOGM around a loss weighting (stays loss-level: one backward of Σ λ_k L_k)."""

    def loss_weights(self, losses: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        return self.smooth(self._inner.loss_weights(losses, context))  # type: ignore[attr-defined]


def cr_mogm(inner: str = "upgrad", beta: float = 0.9,
            inner_params: dict[str, Any] | None = None) -> Aggregator:
    """Build CR-MOGM around the registered weighting ``inner`` (see the module docstring)."""
    check_range("beta", beta, 0.0, 1.0)
    agg = _build_inner(inner, inner_params)
    cls = CRMOGMGramian if isinstance(agg, GramianWeighting) else CRMOGMLoss
    out = cls(inner=inner, beta=beta, inner_params=inner_params)
    out._inner = agg
    return out


@hookimpl
def register_aggregators(register):
    register("cr_mogm", cr_mogm)
