"""DnCNN (Zhang et al., "Beyond a Gaussian Denoiser", TIP 2017)."""

from __future__ import annotations

import torch
from torch import nn


class DnCNN(nn.Module):
    """Residual denoiser: the body predicts the noise and ``forward`` returns ``noisy - noise``.

    Fully convolutional with padding 1, so any image size works at inference.
    """

    def __init__(self, channels: int = 1, depth: int = 17, width: int = 64, batch_norm: bool = True):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers.append(nn.Conv2d(width, width, 3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(width))
            layers.append(nn.ReLU(inplace=True))
        layers.append(nn.Conv2d(width, channels, 3, padding=1))
        self.body = nn.Sequential(*layers)
        self._init()

    def _init(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        # Start near the identity map: a small last layer means the first outputs are ~ the noisy input.
        last = self.body[-1]
        nn.init.normal_(last.weight, std=1e-3)

    def forward(self, noisy: torch.Tensor) -> torch.Tensor:
        return noisy - self.body(noisy)
