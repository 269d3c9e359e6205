"""One image convention, named at the boundaries, and the only place that converts between layouts.

- Images on disk and numpy images are HWC float32 in [0, 1] (``Image.pixels``, validation pairs, synthetic images).
- Tensors, and the patch batches Ray Data delivers (which become tensors as they are), are NCHW.
- A pair is always ``(clean, noisy)``, in that order: :class:`Pair` names it (as BasicSR's ``input_order`` does).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:
    import torch


class Pair(NamedTuple):
    """A clean image and its noisy counterpart (HWC arrays), in that order."""

    clean: np.ndarray
    noisy: np.ndarray


def chw(img: np.ndarray) -> np.ndarray:
    """An HWC image as a contiguous CHW array (one patch of a batch)."""
    return np.ascontiguousarray(np.asarray(img).transpose(2, 0, 1))


def hwc(arr: np.ndarray) -> np.ndarray:
    """A CHW array (one patch of a batch) as an HWC image."""
    return np.asarray(arr).transpose(1, 2, 0)


def to_tensor(img: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """An HWC image as a (1, C, H, W) float32 tensor on ``device`` (a copy: Ray's arrays are read-only)."""
    import torch

    return torch.tensor(chw(np.asarray(img, dtype=np.float32)))[None].to(device)


def to_image(t: torch.Tensor) -> np.ndarray:
    """The first image of an NCHW tensor as an HWC float32 array on the CPU."""
    return np.ascontiguousarray(t[0].detach().cpu().float().numpy().transpose(1, 2, 0))
