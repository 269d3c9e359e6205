"""Small tensor operations the nets, losses and metrics share (no Ray, no MLflow)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gaussian_1d(size: int, sigma: float) -> torch.Tensor:
    """A centred 1-D Gaussian window of ``size`` taps (float64, sums to 1): the separable factor of SSIM's window
    and of BCM's blur kernels."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def pad_to_multiple(x: torch.Tensor, multiple: int, mode: str = "reflect") -> torch.Tensor:
    """Pad (N, C, H, W) on the right and bottom so H and W divide by ``multiple`` (crop back with ``[..., :h, :w]``).
    ``reflect`` falls back to ``replicate`` where the image is not larger than the padding (reflect needs that)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if not ph and not pw:
        return x
    if mode == "reflect" and min(h, w) <= max(ph, pw):
        mode = "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)
