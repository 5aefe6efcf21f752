"""GradNorm: learnable task weights that balance gradient norms and training rates.

Chen, Badrinarayanan, Lee & Rabinovich, "GradNorm: Gradient Normalization for Adaptive Loss
Balancing in Deep Multitask Networks", ICML 2018, https://arxiv.org/abs/1711.02257 (Alg. 1).

Task weights ``w_k`` (init 1) scale the losses, ``d = Σ_k w_k g_k``. They are learnt by
minimising, at every step, the distance of each task's weighted gradient norm on a chosen
shared layer ``W`` to a common target set by the relative training rates:

.. math:: G_k = w_k \\lVert \\nabla_W L_k \\rVert, \\qquad
          r_k = \\frac{L_k / L_k(0)}{\\operatorname{mean}_j L_j / L_j(0)}, \\qquad
          L_{grad} = \\sum_k \\big| G_k - \\operatorname{sg}\\big[\\bar G\\, r_k^{\\alpha}\\big]
          \\big|

(``Ḡ`` the mean of the ``G_k``; ``sg`` stop-gradient: the target is a constant, as in the paper
and both peers), so ``∂L_grad/∂w_k = sign(G_k - Ḡ r_k^α) ‖∇_W L_k‖``. After the optimiser step
the weights are renormalised to ``Σ_k w_k = K``. ``α = 1.5`` is the paper's NYUv2 setting (its
"restoring force": ``α = 0`` asks for equal gradient norms).

mtlkit interface:

* the weights are returned by :meth:`parameters` (pass ``num_tasks`` or let the engine call
  :meth:`configure`); the trainer adds them to the model's optimiser (the paper uses the same
  optimiser; its learning rate then applies to the weights too). :meth:`aggregate` accumulates
  ``∂L_grad/∂w`` into their ``.grad``; :meth:`after_step` renormalises them;
* the chosen layer ``W`` is found in ``context["layout"]`` (the ``ParamLayout`` of ``J``'s
  columns): ``layer`` is a parameter name (``"encoder.3.weight"``) or a module name
  (``"encoder.3"``: its weight and bias); default: the last shared layer with trainable
  coordinates in layout order (the paper's choice: the last shared layer). Without a layout in
  the context (a direct call on a bare ``J``), the norms are taken over all columns;
* ``L_k(0)`` is the first step's losses since :meth:`reset` (``context["losses"]``, must be
  positive).

Differences from the peers: LibMTL learns ``K·softmax(logits)`` instead of the weights
themselves, trains the first epoch with equal weights and uses the first epoch's mean losses as
``L(0)``; TorchJD 0.18 takes the norms over all columns of the matrix it is given (a separate
``GradNormWeighting`` for one layer) and leaves the optimiser to the user. Task heads receive
``∇L_k`` from the engine (not ``w_k ∇L_k`` as in the paper's weighted total loss).

Properties: weighted, permutation invariant (equal initial weights), positively homogeneous
and linear under scaling: at a given state ``d = wᵀ J`` with ``w`` fixed before the call (the
weight update happens in the optimiser). Stateful (``w``, ``L(0)``): :meth:`reset`.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any, ClassVar

import attrs
import torch
from mtlkit_plugins.aggregators._learnable import LearnableTaskScalars, accumulate_grad
from mtlkit_plugins.aggregators._solvers import check_range, losses_vector

from mtlkit import hookimpl
from mtlkit.aggregation import Aggregator
from mtlkit.errors import ConfigError, GradientError
from mtlkit.probing import ParamLayout, layer_of


@attrs.define(eq=False)
class GradNorm(LearnableTaskScalars, Aggregator):
    """GradNorm: task weights learnt to equalise weighted gradient norms on one shared layer."""

    alpha: float = 1.5
    layer: str | None = None
    num_tasks: int | None = None
    #: the learnable task weights w (float32 leaf tensor, handed to the optimiser)
    task_weights: torch.Tensor | None = attrs.field(init=False, default=None, repr=False)
    #: L(0): the first step's losses (float64)
    _initial_losses: torch.Tensor | None = attrs.field(init=False, default=None, repr=False)

    properties: ClassVar[frozenset[str]] = frozenset(
        {"weighted", "permutation_invariant", "positively_homogeneous", "linear_under_scaling"})
    stateful: ClassVar[bool] = True
    scalars_field: ClassVar[str] = "task_weights"
    scalars_owner: ClassVar[str] = "gradnorm"
    #: context read besides J
    context_keys: ClassVar[frozenset[str]] = frozenset({"losses", "layout"})

    def __attrs_post_init__(self) -> None:
        check_range("alpha", self.alpha, 0.0, 100.0)
        if self.layer is not None and (not isinstance(self.layer, str) or not self.layer):
            raise ConfigError(f"invalid layer={self.layer!r}: must be a parameter or module "
                              "name of the shared model")
        self.check_num_tasks()

    def initial_scalar(self) -> float:
        return 1.0  # equal task weights, Σ_k w_k = K

    def reset(self) -> None:
        super().reset()
        self._initial_losses = None

    def columns(self, layout: ParamLayout | None, n: int) -> slice | torch.Tensor:
        """The columns of ``J`` that belong to the chosen layer (all of them without a
        layout and no ``layer`` asked for)."""
        if layout is None:
            if self.layer is not None:
                raise ConfigError(f"gradnorm layer={self.layer!r} needs the parameter layout "
                                  "in its context (context['layout'], passed by the engine)")
            return slice(None)
        if sum(layout.sizes) != n:
            raise ConfigError(f"gradnorm: context['layout'] has {sum(layout.sizes)} trainable "
                              f"coordinates but J has {n} columns")
        groups: dict[str, list[int]] = {}
        for i, name in enumerate(layout.names):
            groups.setdefault(layer_of(name), []).append(i)
        if self.layer is None:
            chosen = [idx for idx in groups.values() if sum(layout.sizes[i] for i in idx) > 0]
            if not chosen:
                return slice(None)
            idx, label = chosen[-1], layer_of(layout.names[chosen[-1][0]])
        elif self.layer in layout.names:
            idx, label = [layout.names.index(self.layer)], self.layer
        elif self.layer in groups:
            idx, label = groups[self.layer], self.layer
        else:
            shown = ", ".join(list(groups)[-8:])
            raise ConfigError(f"gradnorm layer={self.layer!r} is not a shared parameter or "
                              f"module; the last shared layers are: {shown}")
        spans = [(layout.offsets[i], layout.sizes[i]) for i in idx if layout.sizes[i] > 0]
        if not spans:
            raise ConfigError(f"gradnorm layer {label!r} has no trainable coordinates (all "
                              "masked); choose another layer")
        spans.sort()
        if all(a + s == b for (a, s), (b, _) in pairwise(spans)):  # contiguous: a view
            return slice(spans[0][0], spans[-1][0] + spans[-1][1])
        return torch.cat([torch.arange(a, a + s) for a, s in spans])

    def aggregate(self, J: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        K, n = J.shape
        w = self._ensure(K)
        losses = context.get("losses")
        if losses is None:
            raise ConfigError("gradnorm needs the task losses in its context")
        L = losses_vector(losses, K, "gradnorm")
        if self._initial_losses is None or self._initial_losses.numel() != K:
            if bool((L <= 0).any()):
                raise GradientError(f"gradnorm needs positive initial losses L(0) (the "
                                    f"training-rate baseline), got {L.tolist()}")
            self._initial_losses = L.clone()
        cols = self.columns(context.get("layout"), n)
        Jw = J.detach()[:, cols].to(device="cpu", dtype=torch.float64)
        norms = torch.linalg.vector_norm(Jw, dim=1)
        wd = w.detach().double()
        G = wd * norms
        ratio = L / self._initial_losses
        grad = torch.zeros(K, dtype=torch.float64)
        if float(ratio.mean()) > 0:  # all losses 0: every rate is 0/0, nothing to balance
            target = G.mean() * (ratio / ratio.mean()) ** self.alpha
            grad = torch.sign(G - target) * norms
        grad = grad.to(w.dtype)
        accumulate_grad(w, grad)
        return wd.to(device=J.device, dtype=J.dtype) @ J

    def after_step(self, context: dict[str, Any]) -> None:
        """Renormalise the weights to ``Σ_k w_k = K`` after the optimiser moved them."""
        w = self.task_weights
        if w is None:
            return
        with torch.no_grad():
            if not bool(torch.isfinite(w).all()) or bool((w <= 0).any()):
                raise GradientError(f"gradnorm: the task weights left the positive range after "
                                    f"the optimiser step (w = {w.tolist()}); lower the learning "
                                    "rate")
            w.mul_(w.numel() / w.sum())


@hookimpl
def register_aggregators(register):
    register("gradnorm", GradNorm)
