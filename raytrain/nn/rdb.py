"""Residual Dense Blocks and pixel-(un)shuffle resamplers: the building blocks of SeNM-VAE (Zhang et al., RDN 2018;
Zheng et al., SeNM-VAE 2024). Pure torch."""

from __future__ import annotations

import torch
from torch import nn


def _kaiming_(convs: list[nn.Conv2d], scale: float) -> None:
    for conv in convs:
        nn.init.kaiming_normal_(conv.weight, a=0, mode="fan_in")
        conv.weight.data.mul_(scale)  # small residual branches start near the identity
        if conv.bias is not None:
            nn.init.zeros_(conv.bias)


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convs (growth ``growth`` channels, leaky ReLU); output ``x + 0.2 * conv5(...)``."""

    def __init__(self, ch: int, growth: int = 32):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(ch + i * growth, growth, 3, padding=1) for i in range(4))
        self.fuse = nn.Conv2d(ch + 4 * growth, ch, 3, padding=1)
        self.act = nn.LeakyReLU(0.2, inplace=True)
        _kaiming_([*self.convs, self.fuse], 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for conv in self.convs:
            feats.append(self.act(conv(torch.cat(feats, 1))))
        return x + 0.2 * self.fuse(torch.cat(feats, 1))


class DownSample(nn.Module):
    """Halve the resolution without losing information: pixel-unshuffle (C -> 4C at H/2), then a 3x3 conv."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.net = nn.Sequential(nn.PixelUnshuffle(2), nn.Conv2d(4 * cin, cout, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class UpSample(nn.Module):
    """Double the resolution: pixel-shuffle (C -> C/4 at 2H), then a 3x3 conv."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.net = nn.Sequential(nn.PixelShuffle(2), nn.Conv2d(cin // 4, cout, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class GaussianHead(nn.Module):
    """Features -> (mean, log-std) of a diagonal Gaussian, each through an RDB and a 1x1 conv.

    The 1x1 convs start at zero weight (``zero_init``): every latent group starts as N(0, 1) and the posterior equals
    the prior, so the first steps see no KL spike (as the official code does)."""

    def __init__(self, cin: int, cout: int, growth: int = 32, zero_init: bool = True):
        super().__init__()
        self.mean = nn.Sequential(ResidualDenseBlock(cin, growth), nn.Conv2d(cin, cout, 1))
        self.logstd = nn.Sequential(ResidualDenseBlock(cin, growth), nn.Conv2d(cin, cout, 1))
        if zero_init:
            for head in (self.mean, self.logstd):
                head[1].weight.data.zero_()

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mean(h), self.logstd(h)
