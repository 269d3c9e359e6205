"""DnCNN (Zhang et al., "Beyond a Gaussian Denoiser", TIP 2017)."""

from __future__ import annotations

import torch
from torch import nn

from raytrain.nn.ops import pad_to_multiple


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


class _Res(nn.Module):
    """conv 3x3 - ReLU - conv 3x3 plus identity, no bias (DRUNet's residual block)."""

    def __init__(self, ch: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(ch, ch, 3, padding=1, bias=False), nn.ReLU(inplace=True),
                                  nn.Conv2d(ch, ch, 3, padding=1, bias=False))  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class DRUNet(nn.Module):
    """DRUNet (Zhang et al., "Plug-and-Play Image Restoration with Deep Denoiser Prior", TPAMI 2021): a 4-scale
    U-Net of residual blocks, 2x2 strided-conv down / transposed-conv up, additive skips; predicts the clean image.

    ``noise_map=True`` adds the noise level (std on the [0, 1] scale) as a constant input channel, as the paper's
    non-blind model; ``forward`` pads to a multiple of 8 (replicate) and crops back, so any size works.
    """

    def __init__(self, channels: int = 1, widths: tuple[int, ...] = (64, 128, 256, 512), blocks: int = 4,
                 noise_map: bool = False):  # fmt: skip
        super().__init__()
        self.noise_map = noise_map
        self.stride = 2 ** (len(widths) - 1)
        self.head = nn.Conv2d(channels + int(noise_map), widths[0], 3, padding=1, bias=False)
        self.down = nn.ModuleList(
            nn.Sequential(*[_Res(a) for _ in range(blocks)], nn.Conv2d(a, b, 2, 2, bias=False))
            for a, b in zip(widths[:-1], widths[1:], strict=True)
        )
        self.body = nn.Sequential(*[_Res(widths[-1]) for _ in range(blocks)])
        self.up = nn.ModuleList(
            nn.Sequential(nn.ConvTranspose2d(b, a, 2, 2, bias=False), *[_Res(a) for _ in range(blocks)])
            for a, b in zip(widths[:-1], widths[1:], strict=True)
        )
        self.tail = nn.Conv2d(widths[0], channels, 3, padding=1, bias=False)

    def forward(self, noisy: torch.Tensor, level: torch.Tensor | None = None) -> torch.Tensor:
        h, w = noisy.shape[-2:]
        x = pad_to_multiple(noisy, self.stride, mode="replicate")
        if self.noise_map:
            if level is None:
                raise ValueError("this DRUNet takes a noise-level map: give the level")
            x = torch.cat([x, level.to(x.dtype).expand(x.shape[0], 1, *x.shape[2:])], 1)
        skips = [self.head(x)]
        for down in self.down:
            skips.append(down(skips[-1]))
        y = self.body(skips[-1])
        for up, skip in zip(reversed(self.up), reversed(skips[1:]), strict=True):
            y = up(y + skip)
        return self.tail(y + skips[0])[..., :h, :w]
