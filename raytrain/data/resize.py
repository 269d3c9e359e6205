"""Resampling for super-resolution: the bicubic operator B of SeNM-VAE's SR degradation y = B(x) + n' (Sec. 4.6),
the crop of HR images to a multiple of the scale, and aligned centre crops of (HR, LR) pairs. Pure torch / numpy.

``bicubic_down`` is torch's bicubic interpolation with anti-aliasing (the cubic kernel with a = -0.5 widened by the
scale, the scheme of PIL's and MATLAB's ``imresize``; border handling differs from MATLAB's, not checked against it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

# torch is imported where it is used: this module is imported by the data path (data/collection.py, the crop tasks'
# data/pipeline.py), which Ray's Data processes (the dataset manager, the split coordinators, the crop tasks)
# unpickle without needing torch (~1.5 CPU-s a process, tests/test_packaging.py)


def mod_crop(img: np.ndarray, scale: int) -> np.ndarray:
    """The top-left part of an (H, W, C) image whose sides are multiples of ``scale`` (BasicSR's ``mod_crop``)."""
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


def bicubic_down(img: np.ndarray, scale: int) -> np.ndarray:
    """An (H, W, C) image in [0, 1] downscaled by the integer ``scale`` (H, W multiples of it) with anti-aliased
    bicubic interpolation, clipped to [0, 1]; ``scale`` 1 returns the image."""
    if scale == 1:
        return img
    h, w = img.shape[:2]
    if h % scale or w % scale:
        raise ValueError(f"image {h}x{w} is not a multiple of the scale {scale} (mod_crop it first)")
    import torch
    import torch.nn.functional as F

    arr = np.ascontiguousarray(img, dtype=np.float32)
    x = torch.from_numpy(arr if arr.flags.writeable else arr.copy()).permute(2, 0, 1)[None]  # cached: read-only
    y = F.interpolate(x, size=(h // scale, w // scale), mode="bicubic", align_corners=False, antialias=True)
    return np.ascontiguousarray(y[0].clamp(0, 1).numpy().transpose(1, 2, 0))


def bicubic_up(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """An NCHW batch upscaled to ``size`` by bicubic interpolation, clipped to [0, 1]: the SR baseline."""
    import torch.nn.functional as F

    return F.interpolate(x, size=size, mode="bicubic", align_corners=False).clamp(0, 1)


def centre_crop_pair(clean: np.ndarray, noisy: np.ndarray, size: int | None, scale: int = 1
                     ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The centre ``size`` x ``size`` crop of ``noisy`` and the crop of ``clean`` it covers (``size * scale``, at
    ``scale`` times its offset): aligned for an (HR, LR) pair, the plain centre crop of both for scale 1."""
    if size is None:
        return clean, noisy
    h, w = noisy.shape[:2]
    s_h, s_w = min(size, h), min(size, w)
    top, left = (h - s_h) // 2, (w - s_w) // 2
    lr = noisy[top : top + s_h, left : left + s_w]
    hr = clean[top * scale : (top + s_h) * scale, left * scale : (left + s_w) * scale]
    return hr, lr
