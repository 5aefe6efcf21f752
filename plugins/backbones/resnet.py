"""ResNet-18 / ResNet-50 encoders from torchvision (He et al., CVPR 2016, "Deep Residual
Learning for Image Recognition"), the ``vision`` extra.

The ImageNet classifier ``fc`` is replaced by the identity, so the encoder outputs the pooled
512 (ResNet-18) or 2048 (ResNet-50) features; every parameter is shared. Recon uses ResNet-18
on Multi-Fashion+MNIST (from scratch) and CelebA (ImageNet pre-trained) [Recon App. B].
``weights``: a local ``.pth`` state_dict path, or a torchvision enum name (downloads).
"""

from __future__ import annotations

from torch import nn

from mtlkit import hookimpl

_FEATURES = {"resnet18": 512, "resnet50": 2048}


def _resnet(arch: str, weights: str | None) -> nn.Module:
    from mtlkit_plugins.backbones._torchvision import encoder

    return encoder(arch, weights, "fc", _FEATURES[arch])


def resnet18(weights: str | None = None) -> nn.Module:
    """ResNet-18 encoder (512 features) from torchvision; ``weights`` = .pth path or enum."""
    return _resnet("resnet18", weights)


def resnet50(weights: str | None = None) -> nn.Module:
    """ResNet-50 encoder (2048 features) from torchvision; ``weights`` = .pth path or enum."""
    return _resnet("resnet50", weights)


@hookimpl
def register_backbones(register):
    register("resnet18", resnet18)
    register("resnet50", resnet50)
