"""RRDBNet (Wang et al., "ESRGAN", ECCVW 2018): residual-in-residual dense blocks and nearest-neighbour up-sampling."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from raytrain.nn.rdb import ResidualDenseBlock, _kaiming_


def upsampling_steps(scale: int) -> list[int]:
    """The factors of ESRGAN's up-sampling stages for ``scale``: x2 stages for powers of two, one x3 stage for 3."""
    if scale == 3:
        return [3]
    if scale >= 1 and scale & (scale - 1) == 0:
        return [2] * (scale.bit_length() - 1)
    raise ValueError(f"data.scale={scale}: RRDB up-samples by 1, 2, 3, 4 or 8")


class RRDB(nn.Module):
    """Residual in residual dense block: three dense blocks, their output scaled by 0.2 and added to the input."""

    def __init__(self, ch: int, growth: int):
        super().__init__()
        self.body = nn.Sequential(*(ResidualDenseBlock(ch, growth) for _ in range(3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.2 * self.body(x)


class RRDBNet(nn.Module):
    """conv -> ``blocks`` x RRDB -> conv (+ trunk skip) -> (nearest x2 or x3 -> conv -> lrelu) per stage -> conv ->
    lrelu -> conv: an (N, C, h, w) LR batch to (N, C, h * scale, w * scale); with ``residual="bicubic"`` plus the
    bicubic up-sampling of the input."""

    def __init__(self, channels: int, scale: int, width: int = 64, blocks: int = 23, growth: int = 32,
                 residual: str = "none"):  # fmt: skip
        super().__init__()
        self.scale, self.residual = scale, residual
        self.steps = upsampling_steps(scale)
        self.head = nn.Conv2d(channels, width, 3, padding=1)
        self.body = nn.Sequential(*(RRDB(width, growth) for _ in range(blocks)))
        self.body_conv = nn.Conv2d(width, width, 3, padding=1)
        self.ups = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1) for _ in self.steps)
        self.hr_conv = nn.Conv2d(width, width, 3, padding=1)
        self.tail = nn.Conv2d(width, channels, 3, padding=1)
        self.act = nn.LeakyReLU(0.2, inplace=True)
        _kaiming_([self.head, self.body_conv, *self.ups, self.hr_conv, self.tail], 0.1)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        feat = self.head(lr)
        feat = feat + self.body_conv(self.body(feat))
        for factor, conv in zip(self.steps, self.ups, strict=True):
            feat = self.act(conv(F.interpolate(feat, scale_factor=factor, mode="nearest")))
        out = self.tail(self.act(self.hr_conv(feat)))
        if self.residual == "bicubic":  # ``residual: bicubic``: a correction to the bicubic up-sampling
            out = out + F.interpolate(lr, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return out
