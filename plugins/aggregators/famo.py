"""FAMO: fast adaptive multitask optimisation.

Liu et al., "FAMO: Fast Adaptive Multitask Optimization", NeurIPS 2023,
https://arxiv.org/abs/2306.03792 (Alg. 1; reference code Cranial-XIX/FAMO ``famo.py``).

Task logits ``ξ`` (init 0), ``z = softmax(ξ)``. The step minimises
``Σ_k z_k log(L_k - L_k^min + ε)``, whose shared-parameter gradient is the loss weighting

.. math:: w_k = \\frac{c\\, z_k}{L_k - L_k^{\\min} + \\epsilon}, \\qquad
          c = \\Big(\\sum_i \\frac{z_i}{L_i - L_i^{\\min} + \\epsilon}\\Big)^{-1}

(``Σ_k w_k = 1``: the mean-gradient scale). After the optimiser step the logits move by the
observed change of the log-losses ``δ_k = log(L_k - L^min + ε) - log(L'_k - L^min + ε)``:
``ξ.grad = J_softmax(ξ)^T δ``, then an Adam step with ``lr = 0.025`` and weight decay
``γ = 1e-3`` (paper defaults), ``ε = 1e-8``, ``L^min = 0``.

Interface: a loss-level method (``requires = "losses"``; one backward pass, O(1) in K). The
weights come from :meth:`loss_weights`; the logit update happens in :meth:`after_step`, which
reads ``context["losses_after"]``: the task losses on the *same batch* after the optimiser step
(the reference code's extra no-grad forward). When the trainer does not provide that key, the
update is deferred to the next :meth:`loss_weights` call and uses that step's losses (a
different batch: a documented approximation that saves the extra forward pass).

Properties:
weighted, positively homogeneous, linear under (row) scaling, permutation invariant (equal
logits). Stateful (the
logits and their Adam state): :meth:`reset`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
import torch
from mtlkit_plugins.aggregators._solvers import check_range, losses_vector

from mtlkit import hookimpl
from mtlkit.aggregation import LossWeighting
from mtlkit.errors import GradientError


@attrs.define(eq=False)
class FAMO(LossWeighting):
    """Fast adaptive multitask optimisation: log-loss weighting with learnt logits."""

    lr: float = 0.025
    gamma: float = 1e-3
    eps: float = 1e-8
    min_loss: float = 0.0
    _logits: torch.Tensor | None = attrs.field(init=False, default=None, repr=False)
    _adam: list[Any] = attrs.field(init=False, factory=list, repr=False)
    _pending: torch.Tensor | None = attrs.field(init=False, default=None, repr=False)

    properties: ClassVar[frozenset[str]] = frozenset(
        {"weighted", "positively_homogeneous", "linear_under_scaling", "permutation_invariant"})
    stateful: ClassVar[bool] = True
    #: after_step uses ``context["losses_after"]`` when the trainer provides it
    needs_losses_after: ClassVar[bool] = True

    def __attrs_post_init__(self) -> None:
        check_range("lr", self.lr, 0.0, 10.0, lo_open=True)
        check_range("gamma", self.gamma, 0.0, 1.0)
        check_range("eps", self.eps, 0.0, 1.0, lo_open=True)
        check_range("min_loss", self.min_loss, -1e30, 1e30)

    def reset(self) -> None:
        self._logits = None
        self._adam = []
        self._pending = None

    def _ensure(self, K: int) -> torch.Tensor:
        if self._logits is None or self._logits.numel() != K:
            self._logits = torch.zeros(K, dtype=torch.float64, requires_grad=True)
            self._adam = [torch.zeros(K, dtype=torch.float64),
                          torch.zeros(K, dtype=torch.float64), 0]
        return self._logits

    def _shifted(self, L: torch.Tensor) -> torch.Tensor:
        shifted = L - self.min_loss
        if bool((shifted < 0).any()):
            raise GradientError(f"famo needs losses >= min_loss={self.min_loss}, got "
                                f"{L.tolist()} (set min_loss to a lower bound of the losses)")
        return shifted + self.eps

    def loss_weights(self, losses: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        L = losses_vector(losses, None, "famo")
        if self._pending is not None and self._pending.numel() == L.numel():
            self._update(self._pending, L)  # deferred update: next step's losses
        self._pending = L.clone()
        xi = self._ensure(L.numel())
        z = torch.softmax(xi.detach(), dim=0)
        inv = z / self._shifted(L)
        return inv / inv.sum()

    def after_step(self, context: dict[str, Any]) -> None:
        after = context.get("losses_after")
        if after is None or self._pending is None:
            return
        self._update(self._pending, losses_vector(after, self._pending.numel(), "famo"))
        self._pending = None

    def _update(self, before: torch.Tensor, after: torch.Tensor) -> None:
        xi = self._ensure(before.numel())
        delta = torch.log(self._shifted(before)) - torch.log(self._shifted(after))
        with torch.enable_grad():
            grad = torch.autograd.grad(torch.softmax(xi, dim=0), xi, grad_outputs=delta)[0]
        self._adam_step(xi, grad)

    def _adam_step(self, xi: torch.Tensor, grad: torch.Tensor) -> None:
        """``torch.optim.Adam(lr, weight_decay=gamma)`` for one K-vector, written out: building
        a torch optimiser costs seconds on first use (it imports the compiler stack)."""
        beta1, beta2, eps = 0.9, 0.999, 1e-8
        m, v, t = self._adam
        grad = grad + self.gamma * xi.detach()  # Adam's (coupled) L2 weight decay
        t += 1
        m.mul_(beta1).add_(grad, alpha=1 - beta1)
        v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = (v / (1 - beta2**t)).sqrt_().add_(eps)
        with torch.no_grad():
            xi.sub_(self.lr * (m / (1 - beta1**t)) / denom)
        self._adam[2] = t


@hookimpl
def register_aggregators(register):
    register("famo", FAMO)
