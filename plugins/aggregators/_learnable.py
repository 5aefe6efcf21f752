"""K learnable per-task scalars owned by an aggregator (UW, IMTL-L, IMTL, GradNorm).

These methods learn one scalar per task (log-variances, log-scales, task weights) next to the
model: the trainer adds them to its optimiser through :meth:`parameters`, and the aggregator
writes their ``.grad`` itself because it only sees detached losses. The bookkeeping is the same
for all of them, so it lives here once:

* the K scalars are created from ``num_tasks``, from :meth:`configure` (the engine knows K up
  front), or lazily on the first call;
* a later call with another K is an error (the optimiser holds the K-vector already);
* :meth:`parameters` before K is known fails loudly: the optimiser is built before the first
  step, and without K the scalars would silently never train;
* :meth:`reset` refills them with their initial value and drops their gradient.

The scalars stay an attrs field of the method under its own name (``scalars_field``), because
the base class's ``state_dict`` serialises the ``init=False`` fields by name: checkpoints keep
their keys.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from mtlkit.errors import ConfigError


def accumulate_grad(p: torch.Tensor, grad: torch.Tensor) -> None:
    """Add ``grad`` to ``p.grad`` (set it when empty), as autograd would for a leaf."""
    p.grad = grad if p.grad is None else p.grad + grad


class LearnableTaskScalars:
    """Mixin (listed before the aggregator base) for K learnable float32 scalars per method.

    A subclass declares the attrs field that holds them, ``<scalars_field>: torch.Tensor | None
    = attrs.field(init=False, default=None, repr=False)``, and the fields ``num_tasks`` and
    (unless it overrides :meth:`initial_scalar`) ``init``; it calls :meth:`check_num_tasks` from
    ``__attrs_post_init__``.
    """

    #: name of the attrs field holding the scalars (also their checkpoint key)
    scalars_field: ClassVar[str]
    #: the method's registry name, used in messages
    scalars_owner: ClassVar[str]

    num_tasks: int | None
    init: float

    def initial_scalar(self) -> float:
        """The value every scalar starts from (and :meth:`reset` restores)."""
        return float(self.init)

    def check_num_tasks(self) -> None:
        """Validate ``num_tasks`` and, when given, create the scalars now."""
        if self.num_tasks is not None:
            if isinstance(self.num_tasks, bool) or not isinstance(self.num_tasks, int) \
                    or self.num_tasks < 1:
                raise ConfigError(f"invalid num_tasks={self.num_tasks!r}: must be an integer >= 1")
            self._ensure(self.num_tasks)

    @property
    def _scalars(self) -> torch.Tensor | None:
        return getattr(self, self.scalars_field)

    def _ensure(self, K: int) -> torch.Tensor:
        s = self._scalars
        if s is None:
            s = torch.full((K,), self.initial_scalar(), dtype=torch.float32, requires_grad=True)
            setattr(self, self.scalars_field, s)
        elif s.numel() != K:
            raise ConfigError(f"{self.scalars_owner} was set up for {s.numel()} tasks, got {K}")
        return s

    def parameters(self) -> list[torch.Tensor]:
        s = self._scalars
        if s is None:
            raise ConfigError(f"{self.scalars_owner} needs the number of tasks before training: "
                              "pass num_tasks (e.g. --aggregator-param num_tasks=2)")
        return [s]

    def configure(self, num_tasks: int) -> None:
        """Create the scalars for ``num_tasks`` tasks (the engine knows K up front)."""
        self._ensure(int(num_tasks))

    def reset(self) -> None:
        s = self._scalars
        if s is not None:
            with torch.no_grad():
                s.fill_(self.initial_scalar())
            s.grad = None
