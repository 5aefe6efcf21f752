"""Shared machinery of the soft-sharing architectures (LibMTL's ``LibMTL/architecture``).

An architecture is a **model transform** (the ``register_model_transforms`` hook, the same kind
as Recon's branching): it takes a benchmark's hard-parameter-sharing
:class:`~mtlkit.models.MultiTaskModel` (one encoder, one head per task) and returns an
:class:`ArchitectureModel` built from *copies of that encoder* and *the same heads*. So every
architecture works on every benchmark whose model is an encoder + heads, with any head, and
no benchmark needs to know about architectures (LibMTL's ``encoder_class`` / ``decoders``
split, expressed on a built model).

:class:`ArchitectureModel`'s representation stacks one representation per task along dim 1
(``[B, K, ...]``, tasks in head order); :meth:`ArchitectureModel.heads_forward` hands head
``t`` its slice, so "-UB" / representation-level aggregators see per-task features, as for
MTAN.

Shared versus task-specific parameters are **structural and exact**: a parameter is task
``t``'s exactly when only ``t``'s loss can reach it through the computation graph; every other
parameter of the body is shared. Each body states its rule in :meth:`ArchitectureBody.owned`
(the module docs derive it), and the tests check it with autograd. This matters because sparse
training masks and Jacobian methods act on the shared parameters only: a task-specific
parameter wrongly listed as shared only adds zero rows, but a shared one wrongly listed as
task-specific would be trained on one task's gradient alone.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import ClassVar

import torch
from torch import nn

from mtlkit.errors import ConfigError
from mtlkit.models import MultiTaskModel

EXPERT_INITS = ("reset", "copy")


class ArchitectureBody(nn.Module):
    """The part between the input and the heads: ``forward(x) -> [B, K, ...]``.

    :meth:`owned` names, by prefix relative to the body, the parameters that belong to one
    task; everything else is shared.
    """

    def __init__(self, tasks: Sequence[str]) -> None:
        super().__init__()
        tasks = list(tasks)
        if not tasks or len(set(tasks)) != len(tasks):
            raise ConfigError(f"invalid tasks={tasks!r}: an architecture needs distinct task "
                              "names")
        self.task_names = tasks

    def owned(self, task: str) -> tuple[str, ...]:
        """Parameter-name prefixes (relative to the body) that only ``task``'s loss reaches."""
        raise NotImplementedError


def _matches(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


class ArchitectureModel(MultiTaskModel):
    """An :class:`ArchitectureBody` (as ``encoder``) and one head per task."""

    def __init__(self, body: ArchitectureBody, heads: Mapping[str, nn.Module]) -> None:
        if list(heads) != body.task_names:
            raise ConfigError(f"heads {list(heads)} do not match the architecture's tasks "
                              f"{body.task_names}")
        super().__init__(body, heads)

    def heads_forward(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        return {task: head(z[:, i]) for i, (task, head) in enumerate(self.heads.items())}

    def _owned_names(self) -> dict[str, str]:
        owner = {}
        for task in self.task_names:
            prefixes = self.encoder.owned(task)
            for n, _ in self.encoder.named_parameters():
                if _matches(n, prefixes):
                    owner[n] = task
        return owner

    def shared_named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        owner = self._owned_names()
        return [(f"encoder.{n}", p) for n, p in self.encoder.named_parameters()
                if p.requires_grad and n not in owner]

    def task_named_parameters(self, task: str) -> list[tuple[str, nn.Parameter]]:
        own = super().task_named_parameters(task)
        prefixes = self.encoder.owned(task)
        return own + [(f"encoder.{n}", p) for n, p in self.encoder.named_parameters()
                      if p.requires_grad and _matches(n, prefixes)]


def reset_copy(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` with every sub-module's parameters re-initialised (torch's
    ``reset_parameters``), so experts / columns start independent, as LibMTL's
    ``encoder_class()`` called once per expert does for a randomly initialised encoder."""
    clone = copy.deepcopy(module)
    for m in clone.modules():
        reset = getattr(m, "reset_parameters", None)  # torch's own per-layer convention
        if callable(reset):
            reset()
    return clone


def clone(module: nn.Module, init: str) -> nn.Module:
    """``init="reset"``: fresh weights; ``init="copy"``: the prototype's weights (a
    pre-trained encoder: LibMTL loads the same ImageNet weights into every expert)."""
    return reset_copy(module) if init == "reset" else copy.deepcopy(module)


class _LeNetStage(nn.Module):
    """``relu(max_pool2d(conv(x), 2))``: a conv stage of the Multi-MNIST LeNet."""

    def __init__(self, conv: nn.Module) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(nn.functional.max_pool2d(self.conv(x), 2))


class _Dense(nn.Module):
    """``relu(fc(pool(x)))``: the last stage of the LeNet (flatten) and SmallCNN (mean)."""

    def __init__(self, fc: nn.Module, pool: str) -> None:
        super().__init__()
        self.fc = fc
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1) if self.pool == "flatten" else x.mean(dim=(2, 3))
        return torch.relu(self.fc(x))


class _Grey3(nn.Module):
    """The torchvision encoders' grey -> RGB repetition, kept at the front of stage 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.expand(-1, 3, -1, -1) if x.dim() == 4 and x.shape[1] == 1 else x


def _known_stages(encoder: nn.Module) -> list[nn.Module] | None:
    # local imports: plugins may name plugins, the core never does
    from mtlkit_plugins.backbones._torchvision import TorchvisionEncoder
    from mtlkit_plugins.backbones.lenet import LeNetEncoder
    from mtlkit_plugins.backbones.small_cnn import SmallCNN

    if isinstance(encoder, LeNetEncoder):
        return [_LeNetStage(encoder.conv1), _LeNetStage(encoder.conv2),
                _Dense(encoder.fc, "flatten")]
    if isinstance(encoder, SmallCNN):
        blocks = list(encoder.features.children())
        convs = [nn.Sequential(*blocks[i:i + 4]) for i in range(0, len(blocks), 4)]
        return [*convs[:-1], nn.Sequential(convs[-1], _Dense(encoder.fc, "mean"))]
    if isinstance(encoder, TorchvisionEncoder) and encoder.arch.startswith("resnet"):
        b = encoder.body
        return [nn.Sequential(_Grey3(), b.conv1, b.bn1, b.relu, b.maxpool, b.layer1),
                b.layer2, b.layer3, nn.Sequential(b.layer4, b.avgpool, nn.Flatten(1), b.fc)]
    return None


def stages(encoder: nn.Module) -> list[nn.Module]:
    """The encoder as a list of stages whose composition is ``encoder.forward``.

    Cross-stitch, LTB and PLE mix representations *between* stages, so they need this split
    (LibMTL hard-codes ResNet's ``layer1..4``). Known encoders: the Multi-MNIST LeNet (conv,
    conv, fc), SmallCNN (its four conv blocks, the last with the pooling and fc), the
    torchvision ResNets (stem + ``layer1``, ``layer2``, ``layer3``, ``layer4`` + pooling), and
    any ``nn.Sequential`` (the way to bring a third-party encoder): its children, a child that
    is one of the known encoders being split in turn (a backbone followed by extra layers, as
    the Office benchmarks' encoder). The split reuses the encoder's own modules (no copy).
    """
    known = _known_stages(encoder)
    if known is not None:
        return known
    if isinstance(encoder, nn.Sequential):
        out: list[nn.Module] = []
        for child in encoder.children():
            out += _known_stages(child) or [child]
        return out
    raise ConfigError(f"this architecture mixes features between encoder stages, and "
                      f"{type(encoder).__name__} has no known stage split: use an "
                      "nn.Sequential encoder (its children are the stages), lenet, small_cnn "
                      "or a torchvision resnet")


def check_input_shape(name: str, input_shape: object) -> tuple[int, ...]:
    if (not isinstance(input_shape, (list, tuple)) or not input_shape
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1
                       for s in input_shape)):
        raise ConfigError(f"invalid input_shape={input_shape!r}: {name}'s gates read the "
                          "flattened input, so give the shape of one example, e.g. "
                          "[1, 28, 28] for Multi-MNIST")
    return tuple(input_shape)


def check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"invalid {name}={value!r}: must be an integer >= {minimum}")
    return value


def mix(experts: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``sum_e weights[b, e] * experts[e, b, ...]``: a gate's mixture of expert outputs."""
    return torch.einsum("eb...,be->b...", experts, weights)


class Architecture:
    """A model transform turning a hard-sharing model into an :class:`ArchitectureModel`.

    :cvar needs_input_shape: the gates read the flattened input (MMoE, CGC, PLE, DSelect-k).
    """

    name: ClassVar[str] = ""
    needs_input_shape: ClassVar[bool] = False

    def __init__(self, input_shape: Sequence[int] | None = None, expert_init: str = "reset"
                 ) -> None:
        if expert_init not in EXPERT_INITS:
            raise ConfigError(f"invalid expert_init={expert_init!r}: must be one of "
                              f"{', '.join(EXPERT_INITS)}")
        self.input_shape = (check_input_shape(self.name, input_shape)
                            if input_shape is not None else None)
        self.expert_init = expert_init

    def body(self, encoder: nn.Module, tasks: list[str],
             input_shape: tuple[int, ...] | None) -> ArchitectureBody:
        raise NotImplementedError

    def __call__(self, model: nn.Module, *, input_shape: Sequence[int] | None = None
                 ) -> ArchitectureModel:
        """Rebuild ``model``; ``input_shape`` here overrides the constructor's."""
        shape = (check_input_shape(self.name, input_shape) if input_shape is not None
                 else self.input_shape)
        if type(model) is not MultiTaskModel:
            raise ConfigError(f"architecture {self.name!r} rebuilds a hard-parameter-sharing "
                              f"model (an encoder and one head per task); got "
                              f"{type(model).__name__}")
        if self.needs_input_shape and shape is None:
            raise ConfigError(f"architecture {self.name!r} needs input_shape (the shape of "
                              "one input example, e.g. [1, 28, 28]): its gates read the "
                              "flattened input")
        return ArchitectureModel(self.body(model.encoder, model.task_names, shape), model.heads)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(input_shape={self.input_shape})"


def apply_architecture(model: MultiTaskModel, architecture: str | None,
                       params: Mapping[str, object] | None,
                       input_shape: Sequence[int]) -> MultiTaskModel:
    """``model`` rebuilt by the registered transform ``architecture`` (``None``: unchanged).

    What a benchmark calls to offer ``architecture=`` / ``architecture_params=``: it knows its
    input shape, which the gated architectures need, so the user does not give it."""
    if architecture is None:
        if params:
            raise ConfigError("architecture_params given without an architecture")
        return model
    from mtlkit.plugins import get_plugin_manager

    pm = get_plugin_manager()
    factory = pm.registration("transform", architecture).factory
    merged = dict(params or {})
    if isinstance(factory, type) and issubclass(factory, Architecture) \
            and factory.needs_input_shape:
        merged.setdefault("input_shape", list(input_shape))
    return pm.create("transform", architecture, **merged)(model)
