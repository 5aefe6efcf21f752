"""IMTL: impartial multi-task learning (IMTL-L loss scaling and IMTL-G gradient balancing).

Liu, Li, Kuang, Xue, Chen, Yang, Liao & Zhang, "Towards Impartial Multi-task Learning", ICLR
2021, https://openreview.net/forum?id=IMPnRXEWpvr (§3.3: the hybrid "IMTL").

**IMTL-L** gives each task a learnable log-scale ``s_k`` (init 0) and trains on

.. math:: L'_k = e^{s_k} L_k - s_k ,

whose minimum over ``s_k`` is at ``e^{s_k} L_k = 1``: the scaled losses are driven to equal
value, whatever each task's raw loss scale. ``∂L'_k/∂s_k = e^{s_k} L_k - 1``; the scaled
gradients are ``g'_k = e^{s_k} g_k``.

**IMTL-G** then combines the scaled gradients with weights ``α`` (``Σ α_k = 1``) such that the
update has equal projections on every unit gradient (see ``imtl_g``; its solve is reused here
on the Gramian of the scaled rows ``G' = D G D``, ``D = diag(e^s)``):

.. math:: \\alpha = \\mathrm{IMTL\\text{-}G}(D G D), \\qquad
          d = \\sum_k \\alpha_k e^{s_k} g_k = (\\alpha \\odot e^{s})^\\top J .

Because IMTL-G fixes the *direction* from the unit gradients alone, IMTL-L changes only the
update's magnitude: the hybrid moves along IMTL-G's direction with a length set by the
balanced losses (the paper's split of "gradient direction" and "loss scale" impartiality).

mtlkit interface: a Gramian method (``requires = "gramian"``); the ``s_k`` are returned by
:meth:`parameters` (pass ``num_tasks`` or let the engine call :meth:`configure`) and the
trainer adds them to its optimiser, as in the paper and LibMTL where ``s`` is trained jointly
with the model. :meth:`weights` accumulates ``∂L'/∂s = e^s L - 1`` into ``s.grad`` (the context
losses are detached). Task heads receive ``∇L_k`` from the engine, not ``e^{s_k} ∇L_k`` as
in the paper's scaled total loss. LibMTL's ``IMTL`` computes the same hybrid (with the paper's
``K - 1`` x ``K - 1`` inverse instead of the pseudo-inverse used here, which also covers
collinear gradients); TorchJD 0.18 ships IMTL-G only.

Properties: weighted, permutation invariant (equal initial ``s``), positively homogeneous
(IMTL-G's weights are scale-free and ``s`` is fixed during the call). Stateful (the ``s_k``):
:meth:`reset` re-initialises them.
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
import torch
from mtlkit_plugins.aggregators._learnable import LearnableTaskScalars, accumulate_grad
from mtlkit_plugins.aggregators._solvers import check_range, losses_vector
from mtlkit_plugins.aggregators.imtl_g import IMTLG

from mtlkit import hookimpl
from mtlkit.aggregation import GramianWeighting
from mtlkit.errors import ConfigError

#: the IMTL-G solve (stateless), shared by every IMTL instance
_IMTL_G = IMTLG()


@attrs.define(eq=False)
class IMTL(LearnableTaskScalars, GramianWeighting):
    """IMTL-L learnable loss scales with IMTL-G weights on the scaled gradients."""

    init: float = 0.0
    num_tasks: int | None = None
    #: the learnable log-scales s (float32 leaf tensor, handed to the optimiser)
    log_scales: torch.Tensor | None = attrs.field(init=False, default=None, repr=False)

    properties: ClassVar[frozenset[str]] = frozenset(
        {"weighted", "permutation_invariant", "positively_homogeneous"})
    stateful: ClassVar[bool] = True
    scalars_field: ClassVar[str] = "log_scales"
    scalars_owner: ClassVar[str] = "imtl"
    #: context read besides the Gramian
    context_keys: ClassVar[frozenset[str]] = frozenset({"losses"})

    def __attrs_post_init__(self) -> None:
        check_range("init", self.init, -30.0, 30.0)
        self.check_num_tasks()

    def weights(self, G: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        K = G.shape[0]
        losses = context.get("losses")
        if losses is None:
            raise ConfigError("imtl needs the task losses in its context (IMTL-L)")
        L = losses_vector(losses, K, "imtl")
        s = self._ensure(K)
        scale = torch.exp(s.detach().double())
        G64 = G.detach().to(device="cpu", dtype=torch.float64)
        # G's dtype is kept: IMTL-G's rank cut-off depends on the precision G was computed in
        scaled = (scale[:, None] * G64 * scale[None, :]).to(G.dtype)
        alpha = _IMTL_G.weights(scaled, context).to(torch.float64)
        with torch.no_grad():
            grad = (scale * L - 1.0).to(s.dtype)
            accumulate_grad(s, grad)
        return alpha * scale


@hookimpl
def register_aggregators(register):
    register("imtl", IMTL)
