"""LIR's self-supervised consistency losses.

BCM (eq. 10): sum over blur levels of w_s * L1(B_s(a), B_s(b)), B_s a Gaussian blur. Two readings:
``paper`` = sigma 5 / 9 / 15 (kernel 2 * ceil(3 sigma) + 1); ``official`` = kernel size 5 / 9 / 15 with sigma 25.
SCM (eq. 11): squared L2 between VGG-19 features of a and b (optionally instance-normalised, as the code does).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from raytrain.nn.ops import gaussian_1d


def gaussian_kernel1d(size: int, sigma: float) -> torch.Tensor:
    return gaussian_1d(size, sigma).float()


def blur_kernels(reading: str, levels: tuple[int, ...] = (5, 9, 15)) -> list[torch.Tensor]:
    if reading == "paper":
        return [gaussian_kernel1d(2 * math.ceil(3 * s) + 1, float(s)) for s in levels]
    return [gaussian_kernel1d(k, 25.0) for k in levels]


def blur(x: torch.Tensor, k1d: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur, replicate padding (works for kernels larger than the patch)."""
    c, r = x.shape[1], (len(k1d) - 1) // 2
    k = k1d.to(x.dtype).to(x.device)
    x = F.pad(x, (r, r, r, r), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


class BackgroundConsistency(nn.Module):
    def __init__(self, reading: str = "paper", weights: tuple[float, ...] = (0.25, 0.5, 1.0)):
        super().__init__()
        self.kernels = blur_kernels(reading)
        self.weights = tuple(weights)

    def per_scale(self, a: torch.Tensor, b: torch.Tensor) -> list[torch.Tensor]:
        return [(blur(a, k) - blur(b, k)).abs().mean() for k in self.kernels]

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return sum(w * t for w, t in zip(self.weights, self.per_scale(a, b), strict=True))


class SemanticConsistency(nn.Module):
    """||phi(a) - phi(b)||^2 (mean) on a frozen feature net; inputs in [0, 1]."""

    def __init__(self, features: nn.Module, instance_norm: bool = False):
        super().__init__()
        self.features = features
        self.instance_norm = instance_norm

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        fa, fb = self.features(a), self.features(b)
        if self.instance_norm:
            fa, fb = F.instance_norm(fa), F.instance_norm(fb)
        return (fa - fb).pow(2).mean()
