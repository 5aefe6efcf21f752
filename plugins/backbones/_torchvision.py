"""Shared plumbing of the torchvision backbones (the ``vision`` extra).

torchvision is imported lazily, inside the factories, so that mtlkit never needs it: only a user
who asks for ``resnet18``/``resnet50``/``vit_b_16``/``swin_t``/``swin_b`` does. On this project's
CPU-only torch the PyPI torchvision wheel is a CUDA build that imports only after
the ``fix_torchvision_cpu.py`` step of docs/backbones.md, so the error says both things.

Pre-trained weights never download at run time unless asked for by name: ``weights`` is either
a local ``.pth``/``.pt`` file holding a ``state_dict`` (the torchvision checkpoint of the same
architecture; its classifier entries are ignored) or a torchvision weight-enum name
(``IMAGENET1K_V1``, ``DEFAULT``, ``ResNet18_Weights.IMAGENET1K_V1``), which torchvision fetches
into its cache on a machine that can download.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from mtlkit.errors import ConfigError, DataError

VISION_HINT = ("install the vision extra with pip install -c constraints.txt 'mtlkit[vision]' "
               "and, if torch is a CPU-only build and torchvision PyPI's CUDA wheel, run the "
               "fix_torchvision_cpu.py step in docs/backbones.md once after it")


def import_torchvision() -> ModuleType:
    """``torchvision.models``, or a clear error saying how to get a working torchvision."""
    try:
        import torchvision.models as models
    except Exception as exc:  # ImportError, or the RuntimeError of the unfixed CUDA wheel
        raise ConfigError(f"this backbone needs torchvision ({type(exc).__name__}: {exc}); "
                          f"{VISION_HINT}") from None
    return models


def looks_like_path(weights: str) -> bool:
    return (weights.endswith((".pth", ".pt", ".bin")) or "/" in weights or "\\" in weights
            or weights.startswith((".", "~")))


def load_state_dict(path_text: str, arch: str) -> dict[str, torch.Tensor]:
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise DataError(f"missing weights file {path} for backbone {arch!r}: expected a "
                        "torchvision state_dict saved with torch.save (e.g. the file "
                        "torchvision downloads for this architecture into ~/.cache/torch/hub/"
                        "checkpoints/)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DataError(f"cannot read weights file {path}: {type(exc).__name__}: {exc} "
                        "(corrupted, or not a torch.save file?)") from None
    for key in ("state_dict", "model"):  # common wrappers of training checkpoints
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                              for v in state.values()):
        raise DataError(f"weights file {path} does not hold a state_dict (name -> tensor)")
    return state


def build(arch: str, weights: str | None, classifier_prefixes: Iterable[str],
          **kwargs: Any) -> nn.Module:
    """torchvision ``arch`` with ``weights`` (file path, enum name or ``None``)."""
    models = import_torchvision()
    factory = getattr(models, arch)
    if weights is None or looks_like_path(weights):
        model = factory(weights=None, **kwargs)
        if weights is not None:
            load_into(model, load_state_dict(weights, arch), weights, arch,
                      tuple(classifier_prefixes))
        return model
    try:
        enum = models.get_model_weights(arch)
        name = weights.split(".")[-1]
        chosen = enum.DEFAULT if name == "DEFAULT" else enum[name]
    except KeyError:
        names = ", ".join(w.name for w in models.get_model_weights(arch))
        raise ConfigError(f"invalid weights={weights!r} for {arch}: give a local .pth file "
                          f"path, or one of DEFAULT, {names}") from None
    try:
        return factory(weights=chosen, **kwargs)
    except Exception as exc:  # no network: say how to do it offline
        raise DataError(f"cannot obtain torchvision weights {chosen} for {arch} "
                        f"({type(exc).__name__}: {exc}); without network access pass "
                        "weights=<path to the .pth state_dict> instead") from None


def load_into(model: nn.Module, state: dict[str, torch.Tensor], path: str, arch: str,
              classifier_prefixes: tuple[str, ...]) -> None:
    """Load a full-model state_dict into ``model``; the classifier (removed later) is skipped
    so that checkpoints fine-tuned for any number of classes fit."""
    own = model.state_dict()
    state = {k: v for k, v in state.items() if not k.startswith(classifier_prefixes)}
    own_body = {k for k in own if not k.startswith(classifier_prefixes)}
    missing = sorted(own_body - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(state) & own_body if state[k].shape != own[k].shape)
    if missing or unexpected or wrong:
        details = []
        if missing:
            details.append(f"{len(missing)} missing (first: {missing[0]})")
        if unexpected:
            details.append(f"{len(unexpected)} unexpected (first: {unexpected[0]})")
        if wrong:
            k = wrong[0]
            details.append(f"{len(wrong)} with wrong shape (first: {k} "
                           f"{list(state[k].shape)} vs {list(own[k].shape)})")
        raise DataError(f"weights file {path} does not match torchvision {arch}: "
                        + "; ".join(details))
    model.load_state_dict(state, strict=False)


class TorchvisionEncoder(nn.Module):
    """A torchvision model with its classifier replaced by ``nn.Identity``.

    Everything in it is shared (the sparse-training / Recon scope); task heads read its
    ``out_features``-dimensional output. Grey-scale inputs (1 channel) are repeated to 3
    channels, as VTAB does for SmallNORB, so pre-trained RGB filters apply unchanged.
    """

    def __init__(self, body: nn.Module, out_features: int, arch: str) -> None:
        super().__init__()
        self.body = body
        self.out_features = out_features
        self.arch = arch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4 and x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return self.body(x)

    def extra_repr(self) -> str:
        return f"arch={self.arch}, out_features={self.out_features}"


def encoder(arch: str, weights: str | None, classifier: str, out_features: int
            ) -> TorchvisionEncoder:
    """torchvision ``arch`` (see :func:`build`) with its classifier module ``classifier``
    replaced by the identity, as a :class:`TorchvisionEncoder` of ``out_features``."""
    body = build(arch, weights, classifier_prefixes=(f"{classifier}.",))
    setattr(body, classifier, nn.Identity())
    return TorchvisionEncoder(body, out_features, arch)
