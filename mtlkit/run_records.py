"""What a training run keeps and reports: ``results.json``, Δm, the checkpoint state.

:class:`RunRecords` is the part of :class:`~mtlkit.trainer.Trainer` that turns its history into
results and its objects into a plain-data checkpoint (and back); the loop itself lives in
:mod:`mtlkit.trainer`.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from mtlkit import __version__
from mtlkit.masking import ParameterMask
from mtlkit.metrics import delta_m_metric_level, delta_m_task_level


class RunRecords:
    """Results and checkpoint state of a :class:`~mtlkit.trainer.Trainer` (a mixin: it reads
    the trainer's attributes)."""

    # attributes the Trainer sets
    config: Any
    probes: Any

    def _conflict_summary(self, prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for probe in self.probes.values():
            for k, v in probe.summary().items():
                if isinstance(v, (int, float)):
                    out[prefix + k] = v
        return out

    # -- results and state ------------------------------------------------------------------

    def results(self) -> dict[str, Any]:
        cfg = self.config
        final = self.history[-1] if self.history else {}

        def split_metrics(split: str) -> dict[str, dict[str, float]]:
            res: dict[str, dict[str, float]] = {}
            for key, v in final.items():
                parts = key.split(".", 2)
                if len(parts) == 3 and parts[0] == split:
                    res.setdefault(parts[1], {})[parts[2]] = v
            return res

        test = split_metrics("test")
        probe_summaries = {name: p.summary() for name, p in self.probes.items()}
        conflict: dict[str, Any] = {}
        for summary in probe_summaries.values():
            if "incidence_all" in summary:
                conflict = summary
                break
        delta_m, delta_m_task = self._delta_m(test)
        return {
            "benchmark": cfg.benchmark,
            "aggregator": cfg.aggregator,
            "mask": cfg.mask,
            "seed": cfg.seed,
            "trainable_fraction": self.mask.trainable_fraction,
            "tasks": test,
            "val": split_metrics("val"),
            "delta_m": delta_m,
            "delta_m_convention": "metric_level" if delta_m is not None else None,
            "delta_m_task_level": delta_m_task,
            "delta_m_conventions": None if delta_m is None else {
                "metric_level": {"value": delta_m, "better": "lower",
                                 "used_by": "CAGrad, Nash-MTL, sparse training (reported)"},
                "task_level": {"value": delta_m_task, "better": "higher", "used_by": "Recon"}},
            "baseline_source": (self.config.baselines or self.benchmark.baseline_source
                                or None),
            "conflict": conflict,
            "probes": probe_summaries,
            "steps": self.step,
            "epochs": self.epoch,
            "skipped_steps": self.skipped_steps,
            "skipped_steps_per_epoch": [r.get("skipped_steps", 0) for r in self.history],
            "nonfinite_metrics": sorted(
                k for k, v in final.items() if k.startswith(("test.", "val."))
                and isinstance(v, float) and not math.isfinite(v)),
            "wall_s": self.wall_s,
            "mask_info": {"requested_density": self.mask_strategy.density,
                          "mask_point": cfg.mask_point,
                          "trainable_count": self.mask.trainable_count,
                          "shared_count": self.mask.total_count,
                          **self.mask_strategy.describe()},
            "config": cfg.to_dict(),
            "protocol": {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr,
                         "optimizer": self.optimizer_name, "weight_decay": self.weight_decay},
            "history": self.history,
            "mtlkit_version": __version__,
            "torch_version": torch.__version__,
            "device": str(self.device),
        }

    def _delta_m(self, test: dict[str, dict[str, float]]) -> tuple[float | None, float | None]:
        baselines = self.config.load_baselines() or self.benchmark.stl_baselines
        if not baselines:
            return None, None
        baselines = {t: m for t, m in baselines.items() if t in test}
        if not baselines:
            return None, None
        directions = {t.name: t.head.higher_is_better for t in self.tasks}
        return (delta_m_metric_level(test, baselines, directions),
                delta_m_task_level(test, baselines, directions))

    def state(self) -> dict[str, Any]:
        """Everything a resume needs, as plain data only (tensors, numbers, str, bool, None,
        lists/dicts): ``checkpoint.pt`` is read back with ``weights_only=True``, so it can never
        carry code. Aggregators and probes export their state with ``state_dict()``; the
        resolved config and the mtlkit version let ``--resume`` refuse a different run."""
        import json

        from mtlkit.results import CHECKPOINT_FORMAT

        return {
            "format": CHECKPOINT_FORMAT,
            "mtlkit_version": __version__,
            "config": json.loads(json.dumps(self.config.to_dict(), default=str)),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "aggregator": self.aggregator.state_dict(),
            "probes": {name: p.state_dict() for name, p in self.probes.items()},
            "mask": dict(self.mask.masks),
            "frozen_values": self.guard.saved_values(),
            "step": self.step,
            "epoch": self.epoch,
            "history": self.history,
            "step_rows": self.step_rows,
            "skipped_steps": self.skipped_steps,
            "wall_s": self.wall_s,
            "agg_generator": self.agg_generator.get_state(),
            "torch_rng": torch.get_rng_state(),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state`. Refuses (one :class:`ConfigError` listing the keys) a
        checkpoint written by a different configuration or mtlkit version, except the keys
        in :data:`mtlkit.config.RESUMABLE_KEYS`."""
        import json

        from mtlkit.results import check_resumable

        check_resumable(state, json.loads(json.dumps(self.config.to_dict(), default=str)),
                        __version__)
        self.model.load_state_dict(state["model"])
        # aggregator state first (UW's log-variances are copied into the live tensors), then a
        # fresh optimizer over the live parameters takes the saved optimizer state
        self.aggregator.load_state_dict(state["aggregator"])
        for name, probe in self.probes.items():
            probe.load_state_dict(state["probes"].get(name, {}))
        self.optimizer = self._make_optimizer()
        self.optimizer.load_state_dict(state["optimizer"])
        self.mtl.attach_optimizer(self.optimizer)
        self.set_mask(ParameterMask(state["mask"]))
        self.guard.load_saved_values(state["frozen_values"])
        self.step = state["step"]
        self.epoch = state["epoch"]
        self.history = state["history"]
        self.step_rows = state["step_rows"]
        self.skipped_steps = state["skipped_steps"]
        self.wall_s = state["wall_s"]
        self.agg_generator.set_state(state["agg_generator"])
        torch.set_rng_state(state["torch_rng"])

    def _check_skipped(self, skipped: int, steps: int) -> None:
        """Skipped steps are never silent: a warning per epoch with the count, and a
        :class:`GradientError` (exit code 4) when more than ``max_skipped_fraction`` of the
        epoch's steps were skipped."""
        import warnings

        from mtlkit.errors import GradientError

        if not skipped:
            return
        share = skipped / max(steps, 1)
        limit = self.config.max_skipped_fraction
        if share > limit:
            raise GradientError(
                f"epoch {self.epoch}: {skipped} of {steps} steps skipped for non-finite "
                f"gradients ({share:.0%} > max_skipped_fraction={limit:g}); the run is not "
                "training: lower the learning rate, or raise max_skipped_fraction")
        warnings.warn(f"epoch {self.epoch}: skipped {skipped} of {steps} steps (non-finite "
                      f"gradients, nonfinite='skip'; {self.skipped_steps} in total)",
                      NumericalWarning, stacklevel=2)


class NumericalWarning(UserWarning):
    """Skipped steps or non-finite metrics: the run goes on, but the user must know."""
