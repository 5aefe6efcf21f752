"""Mask strategies (sparse training) and the mask value the trainer applies.

A :class:`MaskStrategy` decides, once before training (or every ``reselect_every`` steps),
which coordinates of the shared parameters are trainable. The result is a
:class:`ParameterMask`: one boolean tensor per shared parameter, ``True`` = trainable.

The trainer compacts the per-task Jacobian to the trainable coordinates (so every aggregator
works on ``n = trainable count``), scatters the aggregated update back, and after every
optimizer step restores the frozen coordinates to their saved values. Restoring (rather than only
zeroing ``.grad``) is what keeps frozen weights bit-identical under momentum, Adam's epsilon
arithmetic and decoupled weight decay (AdamW), whose ``p -= lr * wd * p`` ignores the gradient.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import attrs
import torch
from torch import nn

from mtlkit.errors import ConfigError


@attrs.define
class MaskContext:
    """What a strategy may use to choose coordinates.

    :ivar generator: seeded generator for randomised strategies.
    :ivar gradient_magnitudes: callable ``(num_batches) -> {name: accumulated |grad|}`` over
        warm-up batches of the mean task loss, for gradient-based selection; ``None`` when the
        trainer cannot provide it.
    :ivar step: the training step at which the selection happens (0 = before training).
    :ivar modules: ``{parameter name: the module owning it}``, so strategies can tell a
        normalisation layer's scale from a bias, or a transposed convolution's output axis;
        ``None`` (or a missing name) means "guess from names and shapes".
    """

    generator: torch.Generator
    gradient_magnitudes: Callable[[int], dict[str, torch.Tensor]] | None = None
    step: int = 0
    modules: Mapping[str, nn.Module] | None = None


class MaskWarning(UserWarning):
    """A mask request could not be met exactly (K clamped, density unreachable, ...)."""


class MaskStrategy:
    """Base class of mask strategies.

    Implement :meth:`select`. ``reselect_every`` (steps, ``None`` = select once, as in the
    sparse-training paper) asks the trainer to call :meth:`select` again during training.
    """

    reselect_every: ClassVar[int | None] = None
    #: :meth:`select` reads ``MaskContext.gradient_magnitudes``: the engine then selects on the
    #: first backward call (an own loop: that batch's gradients), not at construction
    needs_gradients: ClassVar[bool] = False
    #: the requested trainable fraction, if the strategy targets one (reported in results)
    density: float | None = None

    def select(
        self, params: Mapping[str, nn.Parameter], context: MaskContext
    ) -> dict[str, torch.Tensor]:
        """Return ``{name: bool tensor shaped like the parameter}`` for every given parameter."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """Extra facts for ``results.json`` (e.g. the per-neuron K used)."""
        return {}


@attrs.define(eq=False)
class ParameterMask:
    """Boolean masks over named shared parameters (``True`` = trainable)."""

    masks: dict[str, torch.Tensor]

    @classmethod
    def from_selection(
        cls, params: Mapping[str, nn.Parameter], selection: Mapping[str, torch.Tensor]
    ) -> ParameterMask:
        missing = sorted(set(params) - set(selection))
        extra = sorted(set(selection) - set(params))
        if extra:
            raise ConfigError(f"mask names unknown parameters: {', '.join(extra[:5])}")
        masks = {}
        for name, p in params.items():
            m = selection.get(name)
            if m is None:
                m = torch.ones_like(p, dtype=torch.bool)
            m = torch.as_tensor(m, device=p.device).to(torch.bool)
            if m.shape != p.shape:
                raise ConfigError(
                    f"mask for {name} has shape {tuple(m.shape)}, parameter has {tuple(p.shape)}"
                )
            masks[name] = m
        del missing  # parameters a strategy leaves out train fully
        mask = cls(masks)
        if mask.trainable_count == 0:
            raise ConfigError("the mask leaves no shared coordinate trainable; raise the density")
        return mask

    @property
    def total_count(self) -> int:
        return sum(m.numel() for m in self.masks.values())

    @property
    def trainable_count(self) -> int:
        return int(sum(int(m.sum()) for m in self.masks.values()))

    @property
    def trainable_fraction(self) -> float:
        total = self.total_count
        return self.trainable_count / total if total else 1.0

    @property
    def is_dense(self) -> bool:
        return all(bool(m.all()) for m in self.masks.values())

    def flat_trainable_index(self) -> torch.Tensor:
        """Positions of the trainable coordinates in the flattened full shared vector
        (parameters in mask order), to compact a full-length update to the trainable ones."""
        parts, offset = [], 0
        for m in self.masks.values():
            parts.append(torch.nonzero(m.reshape(-1)).flatten() + offset)
            offset += m.numel()
        return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)


class FrozenGuard:
    """Keeps frozen coordinates bit-identical across optimizer steps.

    Saves the frozen values when armed and writes them back after each step. Only parameters
    with at least one frozen coordinate are touched.
    """

    def __init__(self, params: Mapping[str, nn.Parameter], mask: ParameterMask) -> None:
        self._entries: list[tuple[nn.Parameter, torch.Tensor, torch.Tensor]] = []
        for name, p in params.items():
            m = mask.masks[name]
            if bool(m.all()):
                continue
            self._entries.append((p, m, p.detach().clone()))

    @torch.no_grad()
    def restore(self) -> None:
        for p, m, saved in self._entries:
            p.copy_(torch.where(m, p, saved))

    @property
    def active(self) -> bool:
        return bool(self._entries)

    def saved_values(self) -> list[torch.Tensor]:
        """The frozen values, for checkpoints."""
        return [saved for _, _, saved in self._entries]

    def load_saved_values(self, values: list[torch.Tensor]) -> None:
        if len(values) != len(self._entries):
            raise ValueError("checkpoint's frozen values do not match the mask")
        self._entries = [(p, m, v.to(p.device)) for (p, m, _), v in zip(self._entries, values)]
