"""SegNet encoder-decoder, the shared network of the MTAN code base.

Source: Liu, Johns & Davison, "End-to-End Multi-Task Learning with Attention" (CVPR 2019,
arXiv 1803.10704), code lorenmt/mtan ``model_segnet_split.py``; identical in CAGrad
(Cranial-XIX/CAGrad ``nyuv2/model_segnet_mt.py`` ``SegNetSplit``), Nash-MTL
(AvivNavon/nash-mtl ``experiments/nyuv2/models.py`` ``SegNetSplit``) and Recon (CityScapes).

Stage ``i`` (channels ``f_i``, ``f = [w, 2w, 4w, 8w, 8w]``, ``w = width``, default 64):

* encoder: conv block ``f_{i-1} -> f_i``, then one (stages 0, 1) or two (stages >= 2) conv
  blocks ``f_i -> f_i``, then 2x2 max-pooling keeping the indices;
* decoder, deepest first: max-unpooling with those indices, a conv block
  ``f_i -> f_{i-1}`` (``f_0 -> f_0`` at stage 0), then one or two blocks at that width.

A conv block is 3x3 conv + BatchNorm + ReLU. The output ``[B, w, H, W]`` has the input's
resolution; in the hard-sharing ("split") model every task head reads it, and the whole
network is the shared encoder (sparse training and Recon act on all of it).

``width`` and ``stages`` (1 to 5) shrink the network for tests and CPU runs; the defaults (64,
5) are the published one (24,981,069 parameters with one 13-class head, the count CAGrad's
scripts print). Pooling rounds odd sizes up (``ceil_mode``) and unpooling restores the
pre-pooling size, so any input size runs; for sizes divisible by ``2**stages`` (the published
288x384 and 128x256) this is exactly the reference network, which only supports those.
Initialisation as in the reference: Xavier-normal conv weights, zero biases, BatchNorm (1, 0).
"""

from __future__ import annotations

import attrs
import torch
from torch import nn

from mtlkit import hookimpl
from mtlkit.errors import ConfigError


def conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel_size=3, padding=1),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


def filters(width: int, stages: int) -> list[int]:
    """Channels per stage: ``[w, 2w, 4w, 8w, 8w][:stages]`` (the published ``w`` is 64)."""
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ConfigError(f"invalid width={width!r}: must be an integer >= 1 (published: 64)")
    if isinstance(stages, bool) or not isinstance(stages, int) or not 1 <= stages <= 5:
        raise ConfigError(f"invalid stages={stages!r}: must be an integer in 1..5 "
                          "(published: 5)")
    return [width * m for m in (1, 2, 4, 8, 8)][:stages]


def deepest_pixels(size: tuple[int, int], stages: int) -> int:
    """Pixels per channel at the deepest stage for an input of ``size`` (``H, W``)."""
    f = 2 ** (stages - 1)
    return -(-size[0] // f) * -(-size[1] // f)


def init_weights(module: nn.Module) -> None:
    """The MTAN code base's initialisation, applied to every conv/BN/linear in ``module``."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


@attrs.define(eq=False)
class SegNetFeatures:
    """Intermediate maps MTAN's attention modules read (index = stage, shallow to deep).

    ``enc_first[i]``: after stage i's first encoder block; ``enc_last[i]``: stage i's encoder
    output (before pooling); ``upsampled[i]``: stage i's unpooled decoder input;
    ``dec_last[i]``: stage i's decoder output. ``dec_last[0]`` is the network output.
    """

    enc_first: list[torch.Tensor]
    enc_last: list[torch.Tensor]
    upsampled: list[torch.Tensor]
    dec_last: list[torch.Tensor]


class SegNet(nn.Module):
    """The shared SegNet; ``forward(x) -> [B, width, H, W]``."""

    def __init__(self, in_channels: int = 3, width: int = 64, stages: int = 5) -> None:
        super().__init__()
        f = filters(width, stages)
        self.filters = f
        self.out_channels = f[0]
        self.encoder_block = nn.ModuleList(
            [conv_block(in_channels if i == 0 else f[i - 1], f[i]) for i in range(stages)])
        self.decoder_block = nn.ModuleList(
            [conv_block(f[i], f[i - 1] if i > 0 else f[0]) for i in range(stages)])
        self.conv_block_enc = nn.ModuleList(
            [self._convs(f[i], 1 if i < 2 else 2) for i in range(stages)])
        self.conv_block_dec = nn.ModuleList(
            [self._convs(f[i - 1] if i > 0 else f[0], 1 if i < 2 else 2) for i in range(stages)])
        self.down = nn.MaxPool2d(kernel_size=2, stride=2, return_indices=True, ceil_mode=True)
        self.up = nn.MaxUnpool2d(kernel_size=2, stride=2)
        init_weights(self)

    @staticmethod
    def _convs(channels: int, n: int) -> nn.Module:
        blocks = [conv_block(channels, channels) for _ in range(n)]
        return blocks[0] if n == 1 else nn.Sequential(*blocks)

    def features(self, x: torch.Tensor) -> SegNetFeatures:
        stages = len(self.filters)
        enc_first, enc_last, indices = [], [], []
        for i in range(stages):
            first = self.encoder_block[i](x)
            last = self.conv_block_enc[i](first)
            x, idx = self.down(last)
            enc_first.append(first)
            enc_last.append(last)
            indices.append(idx)
        upsampled: list[torch.Tensor] = [torch.empty(0)] * stages
        dec_last: list[torch.Tensor] = [torch.empty(0)] * stages
        for i in reversed(range(stages)):
            up = self.up(x, indices[i], output_size=enc_last[i].shape[-2:])
            x = self.conv_block_dec[i](self.decoder_block[i](up))
            upsampled[i] = up
            dec_last[i] = x
        return SegNetFeatures(enc_first, enc_last, upsampled, dec_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).dec_last[0]


@hookimpl
def register_backbones(register):
    register("segnet", SegNet)
