"""Shared plumbing of the disk-backed image benchmarks (CelebA, CLEVR, SmallNORB).

* Decoding: Pillow (JPEG/PNG), so no torchvision is needed; resizing and normalisation in torch.
  A missing image names its exact path and the dataset's source; a truncated or corrupted image
  is a :class:`~mtlkit.errors.DataError`, never a silently black or partial picture.
* :class:`LazyImages`: a ``Dataset`` that decodes on access (the trainer's DataLoader batches
  it), so that 200k CelebA images never sit in memory.
* Encoders: any registered backbone (``small_cnn`` by default, or the torchvision ones) is
  built through the plugin manager, so a third-party backbone plugs into every benchmark.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import Dataset

from mtlkit.errors import ConfigError, DataError

#: backbones whose papers feed them 224x224 ImageNet-normalised RGB (the torchvision ones)
PRETRAINED_STYLE = ("resnet18", "resnet50", "vit_b_16", "swin_t", "swin_b")
#: ImageNet statistics: pre-trained torchvision models expect inputs normalised with them.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def check_count(name: str, value: object, *, allow_none: bool = True) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"invalid {name}={value!r}: must be an integer >= 1")
    return value


def check_choice(name: str, value: object, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ConfigError(f"invalid {name}={value!r}: must be one of {', '.join(choices)}")
    return str(value)


def default_image_size(backbone: str, cpu_default: int) -> int:
    """224 for the torchvision backbones (the papers' input size), else the CPU default."""
    return 224 if backbone in PRETRAINED_STYLE else cpu_default


def backbone_choice(backbone: str, backbone_params: Mapping[str, Any] | None,
                    weights: str | None) -> tuple[str, dict[str, Any]]:
    """The backbone name and its parameters; ``weights=...`` is shorthand for
    ``backbone_params={weights=...}`` (a torchvision backbone's local .pth file or enum name)."""
    params = dict(backbone_params or {})
    if weights is not None:
        params["weights"] = weights
    return backbone, params


def split_caps(n_train: object, n_val: object, n_test: object
               ) -> tuple[int | None, int | None, int | None]:
    """Validated ``(n_train, n_val, n_test)`` caps (``None`` keeps a whole split)."""
    return (check_count("n_train", n_train), check_count("n_val", n_val),
            check_count("n_test", n_test))


def require_root(data_root: str | Path | None, benchmark: str, layout: str, source: str) -> Path:
    if data_root is None:
        raise DataError(f"{benchmark} needs --data-root: a folder holding {layout} "
                        f"(download from {source}; nothing is downloaded at run time)")
    return Path(data_root).expanduser()


def require_file(path: Path, source: str, what: str = "file") -> Path:
    if not path.is_file():
        raise DataError(f"missing {what} {path}; expected the official files from {source}")
    return path


def decode_image(path: Path, source: str, mode: str = "RGB") -> torch.Tensor:
    """``uint8 [C, H, W]`` from a JPEG/PNG file (``mode``: Pillow mode, ``RGB`` or ``L``)."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise ConfigError("decoding images needs Pillow: pip install -c constraints.txt "
                          "'mtlkit[data]'") from None
    if not path.is_file():
        raise DataError(f"missing image {path}; expected the official files from {source}")
    try:
        with Image.open(path) as img:
            img.load()  # forces a full decode: a truncated file raises here, not later
            arr = np.asarray(img.convert(mode))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"cannot decode image {path}: {exc} (truncated or corrupted file?)"
                        ) from None
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


class ImageTransform:
    """uint8 ``[C, H, W]`` -> float ``[C, size, size]``: optional central square crop, bilinear
    (antialiased) resize, scaling to [0, 1], grey -> RGB repetition (``rgb=True``, as VTAB
    feeds SmallNORB to RGB models), per-channel normalisation, optional random horizontal flip
    (training only). Picklable, so DataLoader workers can use it."""

    def __init__(self, size: int, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, center_square: bool = False,
                 hflip: bool = False, rgb: bool = False) -> None:
        self.size = size
        self.mean = None if mean is None else torch.tensor(mean).view(-1, 1, 1)
        self.std = None if std is None else torch.tensor(std).view(-1, 1, 1)
        self.center_square = center_square
        self.hflip = hflip
        self.rgb = rgb

    def __call__(self, img: torch.Tensor, generator: torch.Generator | None = None
                 ) -> torch.Tensor:
        if self.center_square:
            h, w = img.shape[-2:]
            side = min(h, w)
            top, left = (h - side) // 2, (w - side) // 2
            img = img[:, top:top + side, left:left + side]
        x = img.float().div_(255.0).unsqueeze(0)
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear",
                              align_corners=False, antialias=True)
        x = x[0]
        if self.rgb and x.shape[0] == 1:
            x = x.expand(3, -1, -1)
        if self.mean is not None and self.std is not None:
            c = x.shape[0]
            x = (x - self.mean[:c]) / self.std[:c]
        if self.hflip and bool(torch.rand((), generator=generator) < 0.5):
            x = x.flip(-1)
        return x


class LazyImages(Dataset):
    """``load(i) -> uint8 [C, H, W]`` decoded on access, transformed, with ``{task: y[i]}``."""

    def __init__(self, load: Callable[[int], torch.Tensor], n: int,
                 targets: Mapping[str, torch.Tensor], transform: ImageTransform) -> None:
        for task, y in targets.items():
            if len(y) != n:
                raise ValueError(f"task {task!r} has {len(y)} targets for {n} images")
        self.load = load
        self.n = n
        self.targets = dict(targets)
        self.transform = transform

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.transform(self.load(i)), {t: y[i] for t, y in self.targets.items()}


class ImageFiles:
    """Picklable ``load(i)`` over a list of image paths."""

    def __init__(self, paths: Sequence[Path], source: str, mode: str = "RGB") -> None:
        self.paths = list(paths)
        self.source = source
        self.mode = mode

    def __call__(self, i: int) -> torch.Tensor:
        return decode_image(self.paths[i], self.source, self.mode)


def build_encoder(backbone: str, params: Mapping[str, Any], defaults: Mapping[str, Any]
                  ) -> nn.Module:
    """The registered backbone ``backbone`` with ``defaults`` overridden by ``params``.
    ``defaults`` entries the backbone does not accept are dropped (e.g. ``in_channels`` for a
    torchvision model), so one call serves every backbone."""
    import inspect

    from mtlkit.plugins import get_plugin_manager

    pm = get_plugin_manager()
    factory = pm.registration("backbone", backbone).factory
    try:
        accepted = set(inspect.signature(factory).parameters)
    except (TypeError, ValueError):
        accepted = set()
    merged = {k: v for k, v in defaults.items() if k in accepted}
    merged.update(params)
    encoder = pm.create("backbone", backbone, **merged)
    if not isinstance(getattr(encoder, "out_features", None), int):
        raise ConfigError(f"backbone {backbone!r} declares no integer out_features, so no "
                          "classification head can attach to it")
    return encoder


def first_n(indices: np.ndarray, n: int | None) -> np.ndarray:
    """The first ``n`` indices (all when ``n`` is None): caps for quick CPU runs."""
    return indices if n is None else indices[:n]
