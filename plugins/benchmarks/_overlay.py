"""The Multi-MNIST overlay of Sener & Koltun (2018): digit A in the top-left and digit B in
the bottom-right of a 36x36 canvas (pixel-wise maximum), scaled back to 28x28.

``fit="resize"`` (default) rescales the whole 36x36 canvas to 28x28 (bilinear, antialiased),
as in Sener & Koltun and the Pareto-MTL code; ``fit="crop"`` keeps the central 28x28 crop.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

CANVAS = 36
SHIFT = CANVAS - 28
FITS = ("resize", "crop")


def overlay_pairs(images: np.ndarray, labels_a: np.ndarray, labels_b: np.ndarray, count: int,
                  rng: np.random.Generator, fit: str = "resize",
                  images_b: np.ndarray | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``count`` overlays of random pairs; returns ``x [count, 1, 28, 28]`` in [0, 1] and the
    two label vectors. ``images_b``/``labels_b`` come from a second pool (Fashion+MNIST)."""
    pool_b = images if images_b is None else images_b
    a = rng.integers(0, len(images), size=count)
    b = rng.integers(0, len(pool_b), size=count)
    if images_b is None:  # two different source digits
        same = a == b
        b[same] = (b[same] + 1 + rng.integers(0, len(images) - 1, size=int(same.sum()))) \
            % len(images)
    canvas = np.zeros((count, CANVAS, CANVAS), dtype=np.uint8)
    canvas[:, :28, :28] = images[a]
    np.maximum(canvas[:, SHIFT:, SHIFT:], pool_b[b], out=canvas[:, SHIFT:, SHIFT:])
    x = torch.from_numpy(canvas).float().div_(255.0).unsqueeze(1)
    if fit == "resize":
        x = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False,
                          antialias=True)
    else:
        off = SHIFT // 2
        x = x[:, :, off:off + 28, off:off + 28].contiguous()
    return x, torch.from_numpy(labels_a[a]).long(), torch.from_numpy(labels_b[b]).long()
