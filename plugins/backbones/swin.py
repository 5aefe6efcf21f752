"""Swin Transformer encoders from torchvision (Liu et al., ICCV 2021, "Swin Transformer:
Hierarchical Vision Transformer using Shifted Windows"), the ``vision`` extra. The
sparse-training paper (ST, arXiv 2411.18615, §4.1) fine-tunes an ImageNet-21K Swin on CelebA
and compares Tiny/Base/Large (its Tab. 8-9).

The classifier ``head`` is replaced by the identity: outputs are the pooled 768 (Swin-T) or
1024 (Swin-B) features. Swin pads inputs to its window size, so any image size works.
"""

from __future__ import annotations

from torch import nn

from mtlkit import hookimpl

_FEATURES = {"swin_t": 768, "swin_b": 1024}


def _swin(arch: str, weights: str | None) -> nn.Module:
    from mtlkit_plugins.backbones._torchvision import encoder

    return encoder(arch, weights, "head", _FEATURES[arch])


def swin_t(weights: str | None = None) -> nn.Module:
    """Swin-T encoder (768 features) from torchvision; ``weights`` = .pth path or enum."""
    return _swin("swin_t", weights)


def swin_b(weights: str | None = None) -> nn.Module:
    """Swin-B encoder (1024 features) from torchvision; ``weights`` = .pth path or enum."""
    return _swin("swin_b", weights)


@hookimpl
def register_backbones(register):
    register("swin_t", swin_t)
    register("swin_b", swin_b)
