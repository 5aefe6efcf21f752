"""PyTorch Lightning: any aggregator, mask and probe through manual optimisation.

Lightning's automatic optimisation calls ``loss.backward()`` on one scalar, which cannot express
a gradient aggregator. :class:`MTLModule` switches to manual optimisation (as Lightning's docs
recommend for multi-objective updates) and lets the engine write the update::

    from mtlkit.integrations.lightning import MTLModule

    class MyModule(MTLModule):
        def __init__(self):
            super().__init__(aggregator="upgrad", mask={"name": "psn", "density": 0.3},
                             probes=["cosine"])
            self.encoder, self.heads = ..., ...

        def shared_parameters(self):
            return self.encoder                      # the shared part

        def task_losses(self, batch, batch_idx):     # {task: scalar loss}
            x, y = batch
            z = self.encoder(x)
            return {t: F.cross_entropy(h(z), y[t]) for t, h in self.heads.items()}

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=1e-3, weight_decay=1e-2)

Each training step logs ``train/loss/<task>``, the due probes' values (``probe/<name>``) and the
task weights to Lightning's logger. Frozen coordinates stay bit-identical under the optimizer
(the engine's step hook), gradient clipping set on the ``Trainer`` is not applied in manual
optimisation: call ``self.clip_gradients`` in :meth:`before_optimizer_step` if needed.
Install with ``pip install 'mtlkit[lightning]'``.
"""

from __future__ import annotations

from typing import Any

import torch

try:
    import lightning.pytorch as pl
    from lightning.pytorch.core.optimizer import LightningOptimizer
except ImportError as exc:  # pragma: no cover - exercised by the skip in the tests
    raise ImportError("mtlkit.integrations.lightning needs Lightning: "
                      "pip install 'mtlkit[lightning]'") from exc

from mtlkit.engine import BackwardReport, MTLBackward


class MTLModule(pl.LightningModule):
    """A ``LightningModule`` whose training step is ``MTLBackward.backward(task_losses)``.

    :param aggregator: as for :class:`mtlkit.MTLBackward`.
    :param mask: as for :class:`mtlkit.MTLBackward`.
    :param probes: as for :class:`mtlkit.MTLBackward`.
    :param engine_options: further keyword arguments of :class:`mtlkit.MTLBackward`
        (``jacobian``, ``probe_every``, ``nonfinite``, ``seed``, ...).
    """

    def __init__(self, aggregator: Any = "mean", mask: Any = None, probes: Any = ("cosine",),
                 **engine_options: Any) -> None:
        super().__init__()
        self.automatic_optimization = False
        self._engine_spec = {"aggregator": aggregator, "mask": mask, "probes": probes,
                             **engine_options}
        self._engine: MTLBackward | None = None

    # -- what a subclass provides ------------------------------------------------------------

    def shared_parameters(self) -> Any:
        """The shared part: a module, parameters, or ``(name, parameter)`` pairs."""
        raise NotImplementedError

    def task_losses(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        """``{task: scalar loss}`` for one batch."""
        raise NotImplementedError

    def before_optimizer_step(self, optimizer: Any) -> None:
        """Hook between the engine's backward and the optimizer step (e.g. gradient
        clipping with ``self.clip_gradients``); default: nothing."""

    # -- Lightning hooks ----------------------------------------------------------------------

    @property
    def engine(self) -> MTLBackward:
        """The engine, built on the first training step (the optimizer exists by then)."""
        if self._engine is None:
            optimizer = self.optimizers()
            inner = optimizer.optimizer if isinstance(optimizer, LightningOptimizer) \
                else optimizer
            self._engine = MTLBackward(self.shared_parameters(), optimizer=inner,
                                       total_steps=self.trainer.estimated_stepping_batches,
                                       **self._engine_spec)
        return self._engine

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        optimizer = self.optimizers()
        losses = self.task_losses(batch, batch_idx)
        optimizer.zero_grad()
        report = self.engine.backward(losses, epoch=self.current_epoch)
        if not report.skipped:
            self.before_optimizer_step(optimizer)
            optimizer.step()
        self._log_report(report)
        return torch.stack([loss.detach() for loss in losses.values()]).sum()

    def _log_report(self, report: BackwardReport) -> None:
        values: dict[str, float] = {f"train/loss/{t}": v for t, v in report.losses.items()}
        values.update({f"probe/{k}": float(v) for k, v in report.probes.items()})
        if report.weights is not None and self.engine.task_names is not None:
            values.update({f"weights/{t}": float(w) for t, w in
                           zip(self.engine.task_names, report.weights.tolist())})
        values["train/skipped"] = float(report.skipped)
        self.log_dict(values, on_step=True, on_epoch=False, prog_bar=False)
