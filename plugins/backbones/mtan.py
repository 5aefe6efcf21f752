"""MTAN: SegNet with task-specific soft-attention modules (the NYUv2/CityScapes protocol).

Source: Liu, Johns & Davison, "End-to-End Multi-Task Learning with Attention" (CVPR 2019,
arXiv 1803.10704), code lorenmt/mtan ``model_segnet_mtan.py``; the same network is CAGrad's
``SegNet`` in Cranial-XIX/CAGrad ``nyuv2/model_segnet_mt.py`` and Nash-MTL's ``SegNetMtan`` in
AvivNavon/nash-mtl ``experiments/nyuv2/models.py``, and the model of the sparse-training paper
(arXiv 2411.18615, "MTAN") and of Recon on NYUv2.

Structure (``f`` = the SegNet stage widths, see :mod:`mtlkit_plugins.backbones.segnet`):

* the shared SegNet;
* shared attention convs: ``encoder_block_att[i]`` (``f_i -> f_{i+1}``, the last
  ``f_i -> f_i``) and ``decoder_block_att[i]`` (``f_i -> f_{i-1}``, stage 0 ``f_0 -> f_0``;
  the deepest one maps to ``f_{i-1}``, which is ``f_i -> f_i`` in the published widths);
* per task: ``encoder_att[i]`` and ``decoder_att[i]``, each 1x1 conv + BN + ReLU + 1x1 conv +
  BN + sigmoid, producing a mask that multiplies the shared features of stage ``i``.

Task ``t``'s features at full resolution (``[B, f_0, H, W]``) feed its prediction head.

The representation ``z`` the heads read is the stack of all tasks' features along channels
(``[B, K * f_0, H, W]``, in task order): :meth:`MTANModel.heads_forward` hands each head its
block, so gradients with respect to ``z`` are per-task features, as Nash-MTL's
``return_representation`` (the tuple of each task's attended features).

Which parameters are "shared" (the scope of sparse training, conflict probes, Recon) is a
choice the papers make differently (``attention_scope``):

``"task"`` (default; CAGrad ``shared_modules()``, Recon ``get_name_of_shared_parameters``)
    the task attention modules are task-specific: each gets only its task's gradient and is
    trained fully; shared = SegNet + the shared attention convs.
``"shared"`` (Nash-MTL ``shared_parameters()``: every parameter whose name lacks ``pred``;
    the code base the sparse-training paper follows)
    the attention modules count as shared: they enter the Jacobian (with zero gradient from
    the other tasks), are masked by sparse training, and lower cross-task cosines.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from mtlkit_plugins.backbones.segnet import SegNet, conv_block, init_weights
from torch import nn
from torch.nn import functional as F

from mtlkit import hookimpl
from mtlkit.errors import ConfigError
from mtlkit.models import MultiTaskModel

ATTENTION_SCOPES = ("task", "shared")


def attention_layer(c_in: int, c_mid: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_mid, kernel_size=1), nn.BatchNorm2d(c_mid), nn.ReLU(inplace=True),
        nn.Conv2d(c_mid, c_out, kernel_size=1), nn.BatchNorm2d(c_out), nn.Sigmoid())


class TaskAttention(nn.Module):
    """One task's encoder and decoder attention masks (one per stage)."""

    def __init__(self, f: Sequence[int]) -> None:
        super().__init__()
        n = len(f)
        self.encoder_att = nn.ModuleList(
            [attention_layer(f[0] if i == 0 else 2 * f[i], f[i], f[i]) for i in range(n)])
        self.decoder_att = nn.ModuleList(
            [attention_layer(2 * f[0], f[0], f[0]) if i == 0
             else attention_layer(f[i] + f[i - 1], f[i - 1], f[i - 1]) for i in range(n)])


class MTANEncoder(nn.Module):
    """Shared SegNet + attention; ``forward(x) -> [B, K * width, H, W]`` (tasks stacked).

    :ivar out_channels: channels each task head reads (``width``).
    """

    def __init__(self, tasks: Sequence[str], in_channels: int = 3, width: int = 64,
                 stages: int = 5) -> None:
        super().__init__()
        tasks = list(tasks)
        if not tasks or len(set(tasks)) != len(tasks):
            raise ConfigError(f"invalid tasks={tasks!r}: MTAN needs distinct task names")
        self.task_names = tasks
        self.segnet = SegNet(in_channels, width, stages)
        f = self.segnet.filters
        n = len(f)
        self.out_channels = f[0]
        self.encoder_block_att = nn.ModuleList(
            [conv_block(f[i], f[i + 1] if i < n - 1 else f[i]) for i in range(n)])
        self.decoder_block_att = nn.ModuleList(
            [conv_block(f[i], f[i - 1] if i > 0 else f[0]) for i in range(n)])
        self.attention = nn.ModuleDict({t: TaskAttention(f) for t in tasks})
        init_weights(self)

    def _attend(self, att: TaskAttention, g) -> torch.Tensor:
        n = len(self.segnet.filters)
        x = None
        for i in range(n):  # encoder, shallow to deep
            inp = g.enc_first[i] if i == 0 else torch.cat((g.enc_first[i], x), dim=1)
            x = att.encoder_att[i](inp) * g.enc_last[i]
            x = F.max_pool2d(self.encoder_block_att[i](x), kernel_size=2, stride=2,
                             ceil_mode=True)  # as SegNet's pooling: sizes stay aligned
        for i in reversed(range(n)):  # decoder, deep to shallow
            # the reference upsamples by 2 (bilinear, align_corners); sizing to the unpooled
            # map is the same for even sizes and keeps odd sizes aligned
            x = F.interpolate(x, size=g.upsampled[i].shape[-2:], mode="bilinear",
                              align_corners=True)
            x = self.decoder_block_att[i](x)
            x = att.decoder_att[i](torch.cat((g.upsampled[i], x), dim=1)) * g.dec_last[i]
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.segnet.features(x)
        return torch.cat([self._attend(self.attention[t], g) for t in self.task_names], dim=1)


class MTANModel(MultiTaskModel):
    """MTAN with one prediction head per task; see the module doc for ``attention_scope``."""

    def __init__(self, encoder: MTANEncoder, heads: Mapping[str, nn.Module],
                 attention_scope: str = "task") -> None:
        if attention_scope not in ATTENTION_SCOPES:
            raise ConfigError(f"invalid attention_scope={attention_scope!r}: must be one of "
                              f"{', '.join(ATTENTION_SCOPES)}")
        if list(heads) != encoder.task_names:
            raise ConfigError(f"MTAN heads {list(heads)} do not match its attention tasks "
                              f"{encoder.task_names}")
        super().__init__(encoder, heads)
        self.attention_scope = attention_scope

    def heads_forward(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        blocks = z.split(self.encoder.out_channels, dim=1)
        return {task: head(block) for (task, head), block in zip(self.heads.items(), blocks)}

    def shared_named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(f"encoder.{n}", p) for n, p in self.encoder.named_parameters()
                if p.requires_grad and (self.attention_scope == "shared"
                                        or not n.startswith("attention."))]

    def task_named_parameters(self, task: str) -> list[tuple[str, nn.Parameter]]:
        own = super().task_named_parameters(task)
        if self.attention_scope == "task":
            own += [(f"encoder.attention.{task}.{n}", p)
                    for n, p in self.encoder.attention[task].named_parameters()
                    if p.requires_grad]
        return own


def build_mtan(heads: Mapping[str, nn.Module], *, in_channels: int = 3, width: int = 64,
               stages: int = 5, attention_scope: str = "task") -> MTANModel:
    """An :class:`MTANModel` with attention for exactly the tasks of ``heads``."""
    encoder = MTANEncoder(list(heads), in_channels, width, stages)
    return MTANModel(encoder, heads, attention_scope)


@hookimpl
def register_backbones(register):
    register("mtan", MTANEncoder)
