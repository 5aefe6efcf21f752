"""Conflict probes: measurements of the per-task gradients, never changing the update.

The trainer hands each due probe a :class:`GradientObservation` (every ``probe_every`` steps).
Gramians are computed lazily and cached on the observation, so several probes share one
``J J^T``. A probe returns a flat ``{name: value}`` record per observed step (written to the
run's ``steps.csv``) and a :meth:`ConflictProbe.summary` for ``results.json``.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, ClassVar

import attrs
import torch

from mtlkit.aggregation import gramian_matrix
from mtlkit.statedict import export_state, import_state


def layer_of(param_name: str) -> str:
    """Recon's layer name of a parameter: its module path (``.weight``/``.bias`` stripped)."""
    return param_name.rsplit(".", 1)[0] if param_name.endswith((".weight", ".bias")) \
        else param_name


@attrs.define(eq=False)
class ParamLayout:
    """Where each shared parameter's coordinates sit in the flattened vectors.

    ``full_offsets``/``full_sizes`` index the flattened *full* shared gradient; ``offsets`` and
    ``sizes`` index the compact trainable vector (the Jacobian's columns).
    """

    names: list[str]
    shapes: list[tuple[int, ...]]
    full_offsets: list[int]
    full_sizes: list[int]
    offsets: list[int]
    sizes: list[int]

    @property
    def n(self) -> int:
        return sum(self.sizes)

    @property
    def n_full(self) -> int:
        return sum(self.full_sizes)

    def layers(self) -> dict[str, list[int]]:
        """Recon's layers: parameters grouped by module (``.weight``/``.bias`` stripped)."""
        groups: dict[str, list[int]] = {}
        for i, name in enumerate(self.names):
            groups.setdefault(layer_of(name), []).append(i)
        return groups


@attrs.define(eq=False)
class GradientObservation:
    """Per-task gradients at one training step.

    :ivar J: ``[K, n]`` gradients on the trainable coordinates (what the aggregator sees).
    :ivar full_grads: ``full_grads[k][i]`` is task ``k``'s gradient on shared parameter ``i``
        (all coordinates, frozen ones included; ``None`` if the parameter is unused by task k).
    """

    step: int
    epoch: int
    progress: float
    task_names: list[str]
    J: torch.Tensor
    full_grads: list[list[torch.Tensor | None]]
    layout: ParamLayout
    losses: torch.Tensor
    extras: dict[str, Any] = attrs.field(factory=dict)

    def _block(self, k: int, i: int) -> torch.Tensor:
        g = self.full_grads[k][i]
        if g is None:
            return torch.zeros(self.layout.full_sizes[i], dtype=self.J.dtype,
                               device=self.J.device)
        return g.reshape(-1).to(self.J.dtype)

    @cached_property
    def gramian(self) -> torch.Tensor:
        """``J J^T`` on the trainable coordinates."""
        return gramian_matrix(self.J)

    @cached_property
    def layer_gramians(self) -> dict[str, torch.Tensor]:
        """Per-layer ``[K, K]`` Gramians of the full gradients (weight and bias together)."""
        K = len(self.full_grads)
        out = {}
        for layer, idx in self.layout.layers().items():
            rows = torch.stack([torch.cat([self._block(k, i) for i in idx]) for k in range(K)])
            out[layer] = rows @ rows.T
        return out

    @cached_property
    def full_gramian(self) -> torch.Tensor:
        """``J_full J_full^T`` on all shared coordinates (frozen included)."""
        grams = list(self.layer_gramians.values())
        return torch.stack(grams).sum(0)


def check_every(every: object) -> int:
    """Validate a probe's ``every`` parameter (observe every N steps)."""
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"invalid every={every!r}: must be an integer >= 1")
    return every


class ConflictProbe:
    """Base class of conflict probes.

    :ivar every: observe every ``every`` steps (the trainer may ask more rarely, never more often).
    """

    every: int = 1

    def observe(self, obs: GradientObservation) -> dict[str, float] | None:
        """Record one step; the returned scalars go to ``steps.csv``."""
        raise NotImplementedError

    def summary(self) -> dict[str, Any]:
        """Aggregate results for ``results.json``."""
        return {}

    def reset(self) -> None:
        """Forget recorded steps."""

    #: attributes that are caches rebuilt on demand, left out of :meth:`state_dict`
    transient_state: ClassVar[frozenset[str]] = frozenset()

    def state_dict(self) -> dict[str, Any]:
        """Recorded steps as plain data for a checkpoint (loaded with ``weights_only=True``).
        Default: every instance attribute (the attrs fields declared ``init=False`` on an
        attrs class), minus :attr:`transient_state` (see :mod:`mtlkit.statedict`)."""
        return export_state(self, self.transient_state)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (what was recorded before the checkpoint)."""
        import_state(self, state, self.transient_state)


def cosine_matrix(G: torch.Tensor, eps: float = 1e-30) -> torch.Tensor:
    """Pairwise cosines from a Gramian; rows with zero norm give cosine 0."""
    norms = torch.sqrt(torch.clamp(torch.diagonal(G), min=0))
    denom = torch.outer(norms, norms)
    return torch.where(denom > eps, G / denom.clamp_min(eps), torch.zeros_like(G))
