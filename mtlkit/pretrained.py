"""Loading a pre-trained encoder into any model: the ``backbone_weights`` config key
(``mtlkit train --backbone-weights FILE``).

The sparse-training paper (arXiv 2411.18615, Tab. 1 and §4.4) makes its claims for *pre-trained*
encoders that are fine-tuned multi-task; this is how a run starts from one. The file is a plain
``state_dict`` of the shared encoder (``torch.save(encoder.state_dict(), path)``), e.g. the one
``benchmarks/pretrain_encoder.py`` writes, or a torchvision ImageNet checkpoint for the
``resnet18`` backbone. Three layouts are accepted, because that is how such files come:

* the encoder's own keys (``conv1.weight``, ...);
* a whole multi-task model's keys: the ``encoder.`` entries are taken, heads are ignored;
* a classifier's keys that the encoder does not have (e.g. torchvision's ``fc.*`` when the
  encoder replaced ``fc`` by the identity) are ignored only if *no* encoder key is missing:
  a partially loaded encoder would silently train from a half-random start.

It loads with ``torch.load(weights_only=True)`` (no pickled code runs), strictly: a missing
encoder key or a shape mismatch is a :class:`~mtlkit.errors.ConfigError` naming the keys.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from mtlkit.errors import ConfigError


def _encoder(model: nn.Module) -> nn.Module:
    """The shared encoder of a :class:`MultiTaskModel` (``model.encoder``); else the model."""
    encoder = getattr(model, "encoder", None)
    return encoder if isinstance(encoder, nn.Module) else model


def _names(keys: list[str], limit: int = 6) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" (and {len(keys) - limit} more)" if len(keys) > limit else "")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of ``path`` (weights only); a clear error for a missing or foreign file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"invalid backbone_weights={str(path)!r}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncated files, non-torch files
        raise ConfigError(f"invalid backbone_weights={str(path)!r}: not a torch state_dict "
                          f"loadable with weights_only=True ({type(exc).__name__}: {exc})"
                          ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # the common {"state_dict": ...} checkpoint wrapper
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                              for v in state.values()):
        raise ConfigError(f"invalid backbone_weights={str(path)!r}: expected a state_dict "
                          "(a mapping of parameter names to tensors)")
    return state


def load_backbone_weights(model: nn.Module, path: str | Path) -> list[str]:
    """Copy the encoder weights of ``path`` into ``model``'s shared encoder; returns the keys
    that were ignored (heads or a classifier the encoder does not have)."""
    state = read_state_dict(path)
    encoder = _encoder(model)
    if any(k.startswith("encoder.") for k in state):
        state = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
    own = encoder.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    if missing:
        raise ConfigError(
            f"backbone_weights={str(path)!r} does not fit the encoder "
            f"({type(encoder).__name__}): missing keys {_names(missing)}"
            + (f"; the file has keys the encoder lacks: {_names(extra)}" if extra else ""))
    shapes = [f"{k} (file {tuple(state[k].shape)}, encoder {tuple(v.shape)})"
              for k, v in own.items() if tuple(state[k].shape) != tuple(v.shape)]
    if shapes:
        raise ConfigError(f"backbone_weights={str(path)!r} does not fit the encoder "
                          f"({type(encoder).__name__}): shape mismatch for {_names(shapes)}")
    encoder.load_state_dict({k: state[k] for k in own}, strict=True)
    return extra
