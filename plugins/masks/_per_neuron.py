"""Shared machinery of the sparse-training mask strategies (arXiv 2411.18615, §3.4).

A *neuron* is one output unit: a row of a Linear weight ``[out, in]``, an output channel of a
Conv weight ``[out, in, kh, kw]`` flattened over ``in*kh*kw`` (for a transposed convolution,
whose weight is ``[in, out, kh, kw]``, the output axis is dim 1). Every parameter with two or
more dimensions is treated this way (an Embedding's rows are its token vectors). The paper's
PSN keeps, for every neuron, the top-K of its incoming weights; K is an **absolute count**
(``min(K, fan_in)`` per row), so one K gives different fractions in different models.

Parameters the paper is silent about follow two switchable policies:

``bias`` (default ``"train"``)
    biases, and any other parameter with fewer than two dimensions that is not part of a
    normalisation layer, train fully. This is what the authors' own per-neuron code (GPS,
    ``utils/pruning.py``) does; biases are a tiny share of the coordinates.
``norm`` (default ``"freeze"``)
    normalisation layers' scale and shift (BatchNorm, LayerNorm, GroupNorm, ...) stay at their
    initial values, again as in GPS. ``"train"`` trains them fully. Recognised by module type;
    for custom modules (and without module information) a 1-D ``.weight`` and its sibling
    ``.bias`` count as a normalisation layer.

Scope: the strategies only see the *shared* parameters (heads always train fully).
``include`` / ``exclude`` (glob patterns on parameter names, e.g. ``"encoder.fc.*"``) narrow the
scope further; shared parameters outside the scope train fully. A pattern matching no shared
parameter is an error.

A requested ``density`` (fraction of *all* shared coordinates) is converted to the K whose real
trainable fraction is closest to it (fully trained biases and out-of-scope parameters count);
the real fraction is reported and a :class:`~mtlkit.masking.MaskWarning` is issued when it is
more than 2 percentage points away.
"""

from __future__ import annotations

import fnmatch
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from mtlkit.errors import ConfigError, invalid_value
from mtlkit.masking import MaskContext, MaskStrategy, MaskWarning

POLICIES = ("train", "freeze")
#: default density for randomly initialised models: the paper's rule of thumb (§4.4, App. D.1)
#: is ~30% trainable for pre-trained and ~60% for randomly initialised models
DEFAULT_DENSITY = 0.6
#: warn when the real trainable fraction misses the requested density by more than this
DENSITY_TOLERANCE = 0.02

_NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)
_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def _patterns(field: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise invalid_value(field, value, "must be a glob pattern or a list of them, "
                                          "e.g. \"encoder.fc.*\"")
    return tuple(value)


def _policy(field: str, value: Any) -> str:
    if value not in POLICIES:
        raise invalid_value(field, value, f"must be one of {', '.join(POLICIES)}")
    return value


def check_density(value: Any) -> float | None:
    if value is None:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not 0 < value <= 1:
        raise invalid_value("density", value, "must be in (0, 1] (the trainable fraction)")
    return float(value)


def check_k(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise invalid_value("k", value, "must be an integer >= 1 (trainable weights per neuron)")
    return value


def kind_of(name: str, p: torch.Tensor, params: Mapping[str, torch.Tensor],
            module: nn.Module | None) -> str:
    """``"weight"`` (per-neuron selection), ``"norm"`` or ``"bias"`` (policies)."""
    if module is not None and isinstance(module, _NORM_TYPES):
        return "norm"
    builtin = module is not None and type(module).__module__.startswith("torch.nn")
    if not builtin and p.dim() < 2:
        # no module information, or a custom module (e.g. a home-made RMSNorm): a 1-D
        # ".weight" is a normalisation scale, and a ".bias" whose sibling ".weight" is 1-D is
        # that layer's shift
        stem, _, leaf = name.rpartition(".")
        sibling = params.get(f"{stem}.weight") if leaf == "bias" else None
        if (leaf == "weight" and p.dim() == 1) or (sibling is not None and sibling.dim() == 1):
            return "norm"
    return "weight" if p.dim() >= 2 else "bias"


def neuron_rows(p: torch.Tensor, module: nn.Module | None) -> torch.Tensor:
    """``[neurons, fan_in]`` view (or copy, for transposed convolutions) of a weight."""
    if module is not None and isinstance(module, _TRANSPOSED):
        return p.transpose(0, 1).reshape(p.shape[1], -1)
    return p.reshape(p.shape[0], -1)


def rows_to_param(rows: torch.Tensor, p: torch.Tensor, module: nn.Module | None) -> torch.Tensor:
    """Inverse of :func:`neuron_rows` for a mask."""
    if module is not None and isinstance(module, _TRANSPOSED):
        shape = (p.shape[1], p.shape[0], *p.shape[2:])
        return rows.reshape(shape).transpose(0, 1).contiguous()
    return rows.reshape(p.shape)


def topk_rows(scores: torch.Tensor, k: int, *, largest: bool = True) -> torch.Tensor:
    """Boolean ``[rows, fan_in]`` mask of the ``min(k, fan_in)`` best entries of every row."""
    fan_in = scores.shape[1]
    if k >= fan_in:
        return torch.ones(scores.shape, dtype=torch.bool, device=scores.device)
    idx = torch.topk(scores, k, dim=1, largest=largest, sorted=False).indices
    mask = torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
    mask.scatter_(1, idx, True)
    return mask


class PerNeuronMask(MaskStrategy):
    """Base of the per-neuron strategies: scope, policies and the density -> K conversion.

    Subclasses implement :meth:`scores` (higher = kept first; ``largest=False`` keeps the
    lowest). :meth:`select_weights` may be overridden for non-per-neuron rules (global top-k).
    """

    largest = True

    def __init__(self, density: float | None = None, k: int | None = None,
                 include: str | Sequence[str] | None = None,
                 exclude: str | Sequence[str] | None = None,
                 bias: str = "train", norm: str = "freeze") -> None:
        density, k = check_density(density), check_k(k)
        if density is not None and k is not None:
            raise ConfigError("give either density or k, not both")
        self.requested_k = k
        self.density = density if density is not None else (
            DEFAULT_DENSITY if k is None else None)
        self.include = _patterns("include", include)
        self.exclude = _patterns("exclude", exclude)
        self.bias = _policy("bias", bias)
        self.norm = _policy("norm", norm)
        self._facts: dict[str, Any] = {}

    # -- hooks for subclasses ---------------------------------------------------------------

    def scores(self, name: str, rows: torch.Tensor, module: nn.Module | None,
               context: MaskContext) -> torch.Tensor:
        """Per-coordinate scores shaped like ``rows``."""
        raise NotImplementedError

    def prepare(self, weights: Mapping[str, torch.Tensor], context: MaskContext) -> None:
        """Called once per selection before :meth:`scores` (e.g. to gather gradients)."""

    def select_weights(self, weights: dict[str, torch.Tensor], modules: dict[str, Any],
                       k: int, context: MaskContext) -> dict[str, torch.Tensor]:
        out = {}
        for name, p in weights.items():
            module = modules.get(name)
            rows = neuron_rows(p.detach(), module)
            keep = topk_rows(self.scores(name, rows, module, context), k, largest=self.largest)
            out[name] = rows_to_param(keep, p, module)
        return out

    # -- the selection ----------------------------------------------------------------------

    def scope(self, params: Mapping[str, torch.Tensor]) -> list[str]:
        names = list(params)
        for field, patterns in (("include", self.include), ("exclude", self.exclude)):
            for pat in patterns:
                if not any(fnmatch.fnmatchcase(n, pat) for n in names):
                    shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
                    raise ConfigError(f"invalid mask {field} pattern {pat!r}: matches no shared "
                                      f"parameter; shared parameters: {shown}")
        if self.include:
            names = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in self.include)]
        return [n for n in names if not any(fnmatch.fnmatchcase(n, p) for p in self.exclude)]

    def select(self, params: Mapping[str, nn.Parameter], context: MaskContext
               ) -> dict[str, torch.Tensor]:
        owners = dict(context.modules or {})
        in_scope = self.scope(params)
        masks: dict[str, torch.Tensor] = {
            n: torch.ones_like(p, dtype=torch.bool) for n, p in params.items()}
        weights: dict[str, torch.Tensor] = {}
        for name in in_scope:
            p = params[name]
            kind = kind_of(name, p, params, owners.get(name))
            if kind == "weight":
                weights[name] = p
            elif getattr(self, kind) == "freeze":
                masks[name] = torch.zeros_like(p, dtype=torch.bool)
        fixed = sum(int(torch.count_nonzero(m)) for n, m in masks.items() if n not in weights)
        total = sum(p.numel() for p in params.values())
        fan_ins = {n: neuron_rows(p.detach(), owners.get(n)).shape for n, p in weights.items()}
        k = self.resolve_k(fan_ins, fixed, total)
        self.prepare(weights, context)
        masks.update(self.select_weights(weights, owners, k, context))
        trainable = sum(int(torch.count_nonzero(m)) for m in masks.values())
        self._facts = {"k": k, "real_density": trainable / total if total else 1.0,
                       "sparse_parameters": list(weights), "bias": self.bias,
                       "norm": self.norm, "scope": in_scope}
        if self.density is not None and abs(trainable / total - self.density) > \
                DENSITY_TOLERANCE:
            warnings.warn(
                f"mask {type(self).__name__}: requested density={self.density} but K={k} gives "
                f"a trainable fraction of {trainable / total:.4f} (fully trained biases/norms "
                "and out-of-scope parameters count, and K >= 1 per neuron)",
                MaskWarning, stacklevel=2)
        return masks

    def resolve_k(self, fan_ins: Mapping[str, tuple[int, int]], fixed: int, total: int) -> int:
        """The per-neuron K: the requested one (clamped), or the one closest to the density."""
        if not fan_ins:
            if self.requested_k is not None or self.density not in (None, 1.0):
                warnings.warn("mask: no parameter with >= 2 dimensions in scope, so there are "
                              "no neurons to select weights for; only the bias/norm policies "
                              "apply", MaskWarning, stacklevel=3)
            return self.requested_k or 1
        rows = np.array([s[0] for s in fan_ins.values()], dtype=np.int64)
        fans = np.array([s[1] for s in fan_ins.values()], dtype=np.int64)
        max_fan = int(fans.max())
        if self.requested_k is not None:
            if self.requested_k > max_fan:
                warnings.warn(f"mask: k={self.requested_k} exceeds every fan-in (largest "
                              f"{max_fan}): every weight in scope is trainable; clamped to "
                              f"k={max_fan}", MaskWarning, stacklevel=3)
                return max_fan
            return self.requested_k
        assert self.density is not None
        ks = np.arange(1, max_fan + 1, dtype=np.int64)
        counts = fixed + (rows[None, :] * np.minimum(ks[:, None], fans[None, :])).sum(1)
        target = self.density * total
        return int(ks[int(np.argmin(np.abs(counts - target)))])

    def describe(self) -> dict[str, Any]:
        return {"requested_k": self.requested_k, **self._facts}
