"""Shared pieces of the loss-level scalarisers (private): preference and reference vectors.

A scalariser ``S(L_1, ..., L_K)`` turns the task losses into one objective. mtlkit's trainer
back-propagates ``Σ_k w_k L_k`` with ``w`` from :meth:`LossWeighting.loss_weights`; choosing
``w = ∇_L S`` at the current (detached) losses makes that one backward pass give exactly
``∇_θ S`` by the chain rule (``∇_θ S = Σ_k ∂S/∂L_k ∇_θ L_k``), for any differentiable ``S``.
So every scalariser module documents ``∂S/∂L_k`` in closed form and its tests compare that with
autograd on ``S`` written out independently.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from mtlkit.errors import ConfigError, invalid_value


def as_vector(field: str, value: object, *, nonnegative: bool, nonzero: bool
              ) -> tuple[float, ...] | None:
    """attrs converter: ``None`` or a non-empty tuple of finite floats (ConfigError else)."""
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        value = value.detach().flatten().tolist()
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
        raise invalid_value(field, value, "need a non-empty list of numbers, one per task "
                            f"(e.g. {field}=[0.5, 0.5])")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise invalid_value(field, value, f"entry {v!r} is not a finite number")
        if nonnegative and v < 0:
            raise invalid_value(field, value, f"entry {v!r} is negative; entries must be >= 0")
        out.append(float(v))
    if nonzero and not any(out):
        raise invalid_value(field, value, "all entries are zero")
    return tuple(out)


def as_preference(value: object) -> tuple[float, ...] | None:
    """A preference vector: non-negative, not all zero (``None``: uniform ``1/K``)."""
    return as_vector("preference", value, nonnegative=True, nonzero=True)


def as_reference(value: object) -> tuple[float, ...] | None:
    """A reference (ideal) point ``z*``: any finite numbers (``None``: the origin)."""
    return as_vector("reference", value, nonnegative=False, nonzero=False)


def per_task(who: str, field: str, value: tuple[float, ...] | None, K: int,
             default: float) -> torch.Tensor:
    """``value`` as a float64 ``[K]`` tensor (``default`` everywhere when ``None``)."""
    if value is None:
        return torch.full((K,), float(default), dtype=torch.float64)
    if len(value) != K:
        raise ConfigError(f"{who}: {field}={list(value)} has {len(value)} entries but there "
                          f"are {K} tasks; give one entry per task")
    return torch.tensor(value, dtype=torch.float64)
