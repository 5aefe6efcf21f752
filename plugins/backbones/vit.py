"""ViT-B/16 encoder from torchvision (Dosovitskiy et al., ICLR 2021, "An Image is Worth 16x16
Words"), the ``vision`` extra. The sparse-training paper (ST, arXiv 2411.18615, §4.1) fine-tunes
an ImageNet-21K ViT-B/16 on VTAB's Clevr and SmallNORB.

The classification head ``heads`` is replaced by the identity: the encoder outputs the
768-dimensional class token. ``image_size`` (default 224, multiple of 16) sets the input size;
pre-trained position embeddings of another size are resized by torchvision's bicubic
``interpolate_embeddings``, so a checkpoint made at 224 (or 384) serves any size.
"""

from __future__ import annotations

from torch import nn

from mtlkit import hookimpl
from mtlkit.errors import ConfigError


def vit_b_16(weights: str | None = None, image_size: int = 224) -> nn.Module:
    """ViT-B/16 encoder (768 features) from torchvision; ``weights`` = .pth path or enum."""
    from mtlkit_plugins.backbones import _torchvision as tv

    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 16 \
            or image_size % 16:
        raise ConfigError(f"invalid image_size={image_size!r}: must be a multiple of 16")
    models = tv.import_torchvision()
    from torchvision.models.vision_transformer import interpolate_embeddings

    if weights is None:
        body = models.vit_b_16(weights=None, image_size=image_size)
    elif tv.looks_like_path(weights):
        body = models.vit_b_16(weights=None, image_size=image_size)
        state = tv.load_state_dict(weights, "vit_b_16")
        key = "encoder.pos_embedding"
        if key in state and state[key].shape != body.state_dict()[key].shape:
            state = interpolate_embeddings(image_size, 16, state)
        tv.load_into(body, state, weights, "vit_b_16", ("heads.",))
    else:  # an enum name: torchvision downloads the checkpoint made at its own size
        body = tv.build("vit_b_16", weights, ("heads.",))
        if image_size != body.image_size:
            state = interpolate_embeddings(image_size, 16, body.state_dict())
            body = models.vit_b_16(weights=None, image_size=image_size)
            body.load_state_dict(state)
    body.heads = nn.Identity()
    return tv.TorchvisionEncoder(body, 768, "vit_b_16")


@hookimpl
def register_backbones(register):
    register("vit_b_16", vit_b_16)
