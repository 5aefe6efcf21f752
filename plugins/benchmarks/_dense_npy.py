"""The preprocessed ``.npy`` layout of the MTAN family (NYUv2, CityScapes) and its benchmark base.

Layout (lorenmt/mtan ``create_dataset.py``; unchanged in Cranial-XIX/CAGrad
``nyuv2/create_dataset.py``, ``cityscapes/create_dataset.py`` and AvivNavon/nash-mtl
``experiments/nyuv2/data.py``)::

    ROOT/train/image/0.npy ... ROOT/train/image/{N-1}.npy    float [H, W, 3]
    ROOT/train/<label folder>/{i}.npy                         [H, W], class index or -1
    ROOT/train/depth/{i}.npy                                  float [H, W, 1], 0 = unknown
    ROOT/train/normal/{i}.npy   (NYUv2 only)                  float [H, W, 3], 0 = unknown
    ROOT/val/...                 the same; the papers' test set

Sample ``i`` is ``{i}.npy`` in every folder; the count is the number of ``.npy`` files.

Checks, all raising :class:`DataError` naming the file. When the splits are built (before
training): missing folders or files (with the dataset's official source), files that are not
readable ``.npy`` arrays (truncated, pickled, corrupted: every header is read and every size
checked), wrong shapes or channel counts, sizes differing between samples, non-numeric dtypes,
and the values of every label and depth file: non-finite values, non-integer or out-of-range
labels (allowed: -1 and ``0..C-1``), negative depths. When a sample is loaded: non-finite
image or normal values. Normal components outside [-1, 1] give a warning.

Training augmentation (``augment``, on by default as in the protocol's
``--apply_augmentation``), after the reference ``RandomScaleCrop`` (credited there to Jialong
Wu, lorenmt/mtan issue 34) plus a horizontal flip:

1. pick a scale ``s`` in (1.0, 1.2, 1.5); crop a random ``int(H/s) x int(W/s)`` window and
   resize it back to ``H x W``: image and normals bilinear (align_corners), labels and depth
   nearest; depth is divided by ``s`` (zooming in brings the scene closer);
2. with probability 1/2 flip horizontally, negating the normals' x component.

Randomness comes from torch's global generator, seeded by the trainer (DataLoader workers
get derived seeds), so runs are reproducible.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import attrs
import numpy as np
import torch
from mtlkit_plugins.backbones.mtan import ATTENTION_SCOPES, build_mtan
from mtlkit_plugins.backbones.segnet import SegNet, deepest_pixels, filters, init_weights
from mtlkit_plugins.benchmarks._images import check_choice
from mtlkit_plugins.heads._dense import check_average
from mtlkit_plugins.heads.depth import Depth
from mtlkit_plugins.heads.normal import Normal
from mtlkit_plugins.heads.segmentation import Segmentation
from torch.nn import functional as F
from torch.utils.data import Dataset

from mtlkit.benchmarks import Benchmark, Splits, Task
from mtlkit.errors import ConfigError, DataError
from mtlkit.models import MultiTaskModel

SCALES = (1.0, 1.2, 1.5)
BACKBONES = ("mtan", "segnet")
#: tolerance on normal components (interpolated unit vectors stay within [-1, 1])
NORMAL_TOL = 1e-3


@attrs.frozen
class Field:
    """One folder of the layout: ``kind`` is image, label, depth or normal."""

    folder: str
    kind: str
    task: str | None = None  # None: the network input

    @property
    def shapes(self) -> str:
        return {"image": "[H, W, 3]", "label": "[H, W]", "depth": "[H, W, 1]",
                "normal": "[H, W, 3]"}[self.kind]

    def size_of(self, shape: tuple[int, ...]) -> tuple[int, int] | None:
        """``(H, W)`` if ``shape`` is valid for this field, else ``None``."""
        if self.kind in ("image", "normal"):
            ok = len(shape) == 3 and shape[2] == 3
        else:  # label, depth: [H, W] or [H, W, 1]
            ok = len(shape) == 2 or (len(shape) == 3 and shape[2] == 1)
        return (int(shape[0]), int(shape[1])) if ok and min(shape[:2]) > 0 else None


@attrs.frozen
class Layout:
    """A dataset in this layout: its name, official source and folders."""

    name: str
    source: str
    fields: tuple[Field, ...]
    num_classes: int

    def missing(self, what: Path, root: Path) -> DataError:
        folders = ",".join(f.folder for f in self.fields)
        return DataError(
            f"{self.name}: {what} not found. Expected the preprocessed {self.name} layout "
            f"{root}/{{train,val}}/{{{folders}}}/<i>.npy (see docs/datasets.md); official "
            f"source: {self.source}")


def _open(path: Path, layout: Layout, mmap: bool) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{layout.name}: missing file {path}; official source: "
                        f"{layout.source}") from None
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{layout.name}: cannot read {path} as a .npy array (truncated or "
                        f"corrupted?): {exc}") from None


def check_values(field: Field, arr: np.ndarray, path: Path, layout: Layout) -> np.ndarray:
    """``arr`` if its shape and values are valid for ``field``, else a :class:`DataError`."""
    name = layout.name
    if field.size_of(arr.shape) is None:
        raise DataError(f"{name}: {path} has shape {arr.shape}; expected {field.shapes}")
    if not np.isfinite(arr).all():
        raise DataError(f"{name}: {path} contains NaN or infinite values")
    if field.kind == "label":
        c = layout.num_classes
        if not (arr == np.round(arr)).all():
            raise DataError(f"{name}: {path} has non-integer labels")
        bad = (arr != -1) & ((arr < 0) | (arr >= c))
        if bad.any():
            raise DataError(f"{name}: {path} has label values "
                            f"{sorted(set(np.unique(arr[bad]).tolist()))[:5]} out of range; "
                            f"allowed are -1 (unlabelled) and 0..{c - 1}")
    if field.kind == "depth" and (arr < 0).any():
        raise DataError(f"{name}: {path} has negative depth values (0 marks unknown)")
    if field.kind == "normal" and path.parent not in _WARNED and \
            (np.abs(arr) > 1 + NORMAL_TOL).any():
        # not an error: the loss and metrics stay defined, and interpolated normals need
        # not be unit vectors; but e.g. [0, 255]-encoded normals would be wrong. Once per
        # folder, not once per file.
        _WARNED.add(path.parent)
        warnings.warn(f"{name}: {path} has normal components outside [-1, 1] (other files of "
                      f"{path.parent} are not reported); expected unit normals with (0, 0, 0) "
                      "where unknown", stacklevel=2)
    return arr


_WARNED: set[Path] = set()


#: kinds whose values are checked for every sample before training (small files: about
#: 2 ms per NYUv2 sample, 3 s for all 1449); images and normals are checked when loaded
SCANNED_KINDS = ("label", "depth")


def scan_split(split_dir: Path, root: Path, layout: Layout) -> tuple[int, tuple[int, int]]:
    """Check one split folder's files (names, headers, sizes); return ``(count, (H, W))``."""
    if not split_dir.is_dir():
        raise layout.missing(split_dir, root)
    present: dict[str, set[int]] = {}
    for field in layout.fields:
        folder = split_dir / field.folder
        if not folder.is_dir():
            raise layout.missing(folder, root)
        stems = [p.stem for p in folder.glob("*.npy") if not p.name.startswith(".")]
        bad = [s for s in stems if not s.isdigit() or (s != "0" and s.startswith("0"))]
        if bad:
            raise DataError(f"{layout.name}: unexpected file {folder / (bad[0] + '.npy')}: "
                            "samples must be named 0.npy, 1.npy, ...")
        present[field.folder] = {int(s) for s in stems}
    n = max((max(p) + 1 for p in present.values() if p), default=0)
    if n == 0:
        raise DataError(f"{layout.name}: no .npy files in the folders of {split_dir}; official "
                        f"source: {layout.source}")
    # every folder needs 0..n-1, n being the highest index found in any folder; report the
    # lowest missing index (the likeliest single culprit)
    gaps = [(i, folder) for folder, indices in present.items()
            for i in sorted(set(range(n)) - indices)[:1]]
    if gaps:
        i, folder = min(gaps, key=lambda gap: gap[0])  # ties: first folder of the layout
        raise DataError(f"{layout.name}: missing file {split_dir / folder / f'{i}.npy'} "
                        f"(the folders of {split_dir} hold samples up to {n - 1}.npy); "
                        f"official source: {layout.source}")
    size: tuple[int, int] | None = None
    for i in range(n):
        for field in layout.fields:
            path = split_dir / field.folder / f"{i}.npy"
            # labels and depth are read whole and checked now, so that a bad value in any
            # sample stops the run before training, not when (or if) that sample is drawn;
            # the large image/normal files only get their header and size checked
            full = field.kind in SCANNED_KINDS
            arr = _open(path, layout, mmap=not full)
            shape, dtype = tuple(arr.shape), arr.dtype
            if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
                raise DataError(f"{layout.name}: {path} has dtype {dtype}; expected a real "
                                "numeric array")
            hw = field.size_of(shape)
            if hw is None:
                raise DataError(f"{layout.name}: {path} has shape {shape}; expected "
                                f"{field.shapes} for {field.folder}")
            if full:
                check_values(field, arr, path, layout)
            del arr
            if size is None:
                size = hw
            elif hw != size:
                raise DataError(f"{layout.name}: {path} is {hw[0]}x{hw[1]} but "
                                f"{split_dir / layout.fields[0].folder / '0.npy'} is "
                                f"{size[0]}x{size[1]}; all samples must have one size")
    assert size is not None
    return n, size


class DenseNpyDataset(Dataset):
    """Samples ``indices`` of one split folder: ``(image [3, H, W], {task: target})``.

    Targets: labels ``int64 [H, W]`` (-1 = unlabelled), depth ``float32 [1, H, W]``, normals
    ``float32 [3, H, W]`` (0 = unknown for both).
    """

    def __init__(self, split_dir: Path, layout: Layout, indices: Sequence[int], *,
                 augment: bool = False, image_size: tuple[int, int] | None = None) -> None:
        self.split_dir = split_dir
        self.layout = layout
        self.indices = list(indices)
        self.augment = augment
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.indices)

    def _load(self, field: Field, i: int) -> torch.Tensor:
        path = self.split_dir / field.folder / f"{i}.npy"
        arr = _open(path, self.layout, mmap=False)
        if field.kind not in SCANNED_KINDS:  # scan_split already checked labels and depth
            check_values(field, arr, path, self.layout)
        if field.kind == "label":
            return torch.from_numpy(arr.reshape(arr.shape[:2]).astype(np.int64))
        arr = arr.reshape(*arr.shape[:2], -1).astype(np.float32)
        return torch.from_numpy(np.ascontiguousarray(np.moveaxis(arr, -1, 0)))

    def __getitem__(self, k: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        i = self.indices[k]
        data = {f.kind: self._load(f, i) for f in self.layout.fields}
        if self.augment:
            data = random_scale_crop_flip(data)
        if self.image_size is not None:
            data = _resize(data, self.image_size)
        targets = {f.task: data[f.kind] for f in self.layout.fields if f.task is not None}
        return data["image"], targets


def _interp(x: torch.Tensor, size: tuple[int, int], kind: str) -> torch.Tensor:
    if kind in ("image", "normal"):
        return F.interpolate(x[None], size=size, mode="bilinear", align_corners=True)[0]
    if kind == "label":
        return F.interpolate(x[None, None].float(), size=size, mode="nearest")[0, 0].long()
    return F.interpolate(x[None], size=size, mode="nearest")[0]


def random_scale_crop_flip(data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The protocol's training augmentation (see the module doc)."""
    height, width = data["image"].shape[-2:]
    s = SCALES[int(torch.randint(len(SCALES), ()))]
    h, w = max(1, int(height / s)), max(1, int(width / s))
    top = int(torch.randint(height - h + 1, ()))
    left = int(torch.randint(width - w + 1, ()))
    out = {}
    for kind, x in data.items():
        crop = x[..., top:top + h, left:left + w]
        out[kind] = _interp(crop, (height, width), kind)
    if "depth" in out:
        out["depth"] = out["depth"] / s
    if bool(torch.rand(()) < 0.5):
        out = {kind: x.flip(-1) for kind, x in out.items()}
        if "normal" in out:
            out["normal"][0] = -out["normal"][0]
    return out


def _resize(data: dict[str, torch.Tensor], size: tuple[int, int]) -> dict[str, torch.Tensor]:
    if tuple(data["image"].shape[-2:]) == tuple(size):
        return data
    return {kind: _interp(x, size, kind) for kind, x in data.items()}


def _check_image_size(value: Any) -> tuple[int, int] | None:
    if value is None:
        return None
    ok = isinstance(value, (list, tuple)) and len(value) == 2 and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)
    if not ok:
        raise ConfigError(f"invalid image_size={value!r}: must be [height, width] (integers)")
    return int(value[0]), int(value[1])


class DenseNpyBenchmark(Benchmark):
    """Base of the NYUv2 and CityScapes benchmarks (one ``.npy`` per sample and folder).

    Parameters (all benchmarks of this family):

    ``data_root``
        the folder holding ``train/`` and ``val/`` (or a parent holding one of
        :attr:`subfolders`, e.g. ``nyuv2/``).
    ``val_fraction`` (0.1), ``data_seed`` (0)
        the validation split: this fraction of ``train/`` (at least one sample), chosen by
        ``data_seed`` and held out from training. The papers have no validation split and
        train on all of ``train/``: ``val_fraction=0`` does that, and the ``val`` split is
        then the test set (do not tune on it).
    ``augment`` (true)
        the training augmentation of the protocol (module doc).
    ``image_size`` ([height, width] or none)
        resize every sample (for CPU runs); none keeps the files' resolution.
    ``backbone`` ("mtan" or "segnet"), ``width`` (64), ``stages`` (5)
        the model: MTAN, or the hard-sharing SegNet whose heads all read the decoder output;
        ``width``/``stages`` shrink it (the defaults are the published network); ``stages``
        is lowered, with a warning, for images too small for it (see ``_stages_for_data``).
    ``attention_scope`` ("task" or "shared")
        MTAN only: whether the task attention modules count as shared parameters
        (see :mod:`mtlkit_plugins.backbones.mtan`).
    ``metric_average`` ("batch" or "pixel")
        depth/normal metric averaging; "batch" with the protocol's evaluation batch size
        reproduces the reference code (see :mod:`mtlkit_plugins.heads._dense`).
    ``baselines``
        which published single-task results :attr:`stl_baselines` returns (for Δm).
    """

    layout: ClassVar[Layout]
    subfolders: ClassVar[tuple[str, ...]] = ()
    #: ``{set name: (source, {task: {metric: value}})}``
    baseline_sets: ClassVar[dict[str, tuple[str, dict[str, dict[str, float]]]]] = {}
    default_baselines: ClassVar[str] = "none"

    def __init__(self, data_root: str | None = None, seed: int = 0, data_seed: int = 0,
                 val_fraction: float = 0.1, augment: bool = True,
                 image_size: Sequence[int] | None = None, backbone: str = "mtan",
                 width: int = 64, stages: int = 5, attention_scope: str = "task",
                 metric_average: str = "batch", baselines: str | None = None) -> None:
        layout = self.layout
        if data_root is None:
            raise DataError(f"{layout.name} needs --data-root: the folder holding the "
                            f"preprocessed train/ and val/ folders (see docs/datasets.md); "
                            f"official source: {layout.source}")
        if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or \
                not 0 <= val_fraction < 1:
            raise ConfigError(f"invalid val_fraction={val_fraction!r}: must be in [0, 1)")
        if not isinstance(augment, bool):
            raise ConfigError(f"invalid augment={augment!r}: must be true or false")
        check_choice("backbone", backbone, BACKBONES)
        check_choice("attention_scope", attention_scope, ATTENTION_SCOPES)
        filters(width, stages)  # validates
        self.metric_average = check_average(metric_average)
        baselines = self.default_baselines if baselines is None else baselines
        if baselines != "none" and baselines not in self.baseline_sets:
            raise ConfigError(f"invalid baselines={baselines!r}: must be one of "
                              f"{', '.join([*self.baseline_sets, 'none'])}")
        self.root = self._find_root(Path(data_root).expanduser())
        self.seed = seed
        self.data_seed = data_seed
        self.val_fraction = float(val_fraction)
        self.augment = augment
        self.image_size = _check_image_size(image_size)
        self.backbone = backbone
        self.width = width
        self.stages = stages
        self.attention_scope = attention_scope
        self.baselines = baselines
        self.baseline_source = (self.baseline_sets[baselines][0] if baselines != "none"
                                else "")
        self._splits: Splits | None = None
        self.sizes: dict[str, int] = {}

    def _find_root(self, root: Path) -> Path:
        if (root / "train").is_dir() or (root / "val").is_dir():
            return root
        for sub in self.subfolders:
            if (root / sub / "train").is_dir():
                return root / sub
        return root  # scan_split names the missing folder

    @property
    def tasks(self) -> list[Task]:
        heads = {"label": Segmentation(self.layout.num_classes),
                 "depth": Depth(average=self.metric_average),
                 "normal": Normal(average=self.metric_average)}
        return [Task(f.task, heads[f.kind]) for f in self.layout.fields if f.task is not None]

    def splits(self) -> Splits:
        if self._splits is None:
            layout = self.layout
            train_dir, test_dir = self.root / "train", self.root / "val"
            n_train, size = scan_split(train_dir, self.root, layout)
            # the test split may have its own size (the networks take any size)
            n_test, test_size = scan_split(test_dir, self.root, layout)
            order = np.random.default_rng(self.data_seed).permutation(n_train)
            n_val = 0
            if self.val_fraction > 0 and n_train < 2:
                warnings.warn(f"{layout.name}: {train_dir} has a single sample, none can be "
                              "held out: the val split is the test split", stacklevel=2)
            elif self.val_fraction > 0:
                n_val = min(max(1, round(self.val_fraction * n_train)), n_train - 1)
            val_idx, train_idx = sorted(order[:n_val].tolist()), sorted(order[n_val:].tolist())
            common = {"image_size": self.image_size}
            train = DenseNpyDataset(train_dir, layout, train_idx, augment=self.augment,
                                    **common)
            test = DenseNpyDataset(test_dir, layout, range(n_test), **common)
            val = DenseNpyDataset(train_dir, layout, val_idx, **common) if n_val else test
            smallest = self.image_size or (min(size[0], test_size[0]),
                                           min(size[1], test_size[1]))
            self.sizes = {"train": len(train), "val": len(val), "test": len(test),
                          "height": smallest[0], "width": smallest[1]}
            self._splits = Splits(train, val, test)
        return self._splits

    def _stages_for_data(self) -> int:
        """``stages``, reduced (with a warning) for images so small that the deepest stage
        would have one pixel: BatchNorm cannot train on a single value per channel, which a
        last batch of one image would give. Never triggers at the published sizes."""
        self.splits()
        size = (self.sizes["height"], self.sizes["width"])
        stages = self.stages
        while stages > 1 and deepest_pixels(size, stages) < 2:
            stages -= 1
        if stages != self.stages:
            warnings.warn(f"{self.layout.name}: {size[0]}x{size[1]} images are too small for "
                          f"stages={self.stages}; using stages={stages}", stacklevel=2)
        return stages

    def build_model(self, tasks: list[str] | None = None) -> MultiTaskModel:
        heads = {t.name: t.head.build(self.width) for t in self.tasks
                 if tasks is None or t.name in tasks}
        for head in heads.values():
            init_weights(head)
        stages = self._stages_for_data()
        if self.backbone == "segnet":
            return MultiTaskModel(SegNet(3, self.width, stages), heads)
        return build_mtan(heads, width=self.width, stages=stages,
                          attention_scope=self.attention_scope)

    @property
    def stl_baselines(self) -> dict[str, dict[str, float]] | None:
        if self.baselines == "none":
            return None
        return {t: dict(m) for t, m in self.baseline_sets[self.baselines][1].items()}

    def describe(self) -> dict[str, Any]:
        return {"data_root": str(self.root), "val_fraction": self.val_fraction,
                "data_seed": self.data_seed, "augment": self.augment,
                "backbone": self.backbone, "width": self.width, "stages": self.stages,
                "attention_scope": self.attention_scope,
                "metric_average": self.metric_average, "baselines": self.baselines,
                **self.sizes}
