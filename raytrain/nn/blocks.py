"""UNIT-style building blocks: conv blocks, residual blocks, encoders, decoders, PatchGAN discriminators.

Shapes follow the LIR official (UNIT-based) code: a content encoder maps (C, H, W) to (dim * 2**n_down, H / 2**n_down,
W / 2**n_down), i.e. 256 x H/4 x W/4 with the defaults dim=64, n_down=2.
"""

from __future__ import annotations

import torch
from torch import nn


def norm_layer(kind: str, ch: int) -> nn.Module:
    if kind == "bn":
        return nn.BatchNorm2d(ch)
    if kind == "in":
        return nn.InstanceNorm2d(ch, affine=False)
    if kind == "ln":
        return nn.GroupNorm(1, ch)  # layer norm over (C, H, W)
    return nn.Identity()


def conv_block(
    cin: int, cout: int, k: int, stride: int = 1, norm: str = "none", act: str = "relu", pad_mode: str = "reflect"
) -> nn.Sequential:
    """Pad (reflect, or zeros for discriminators that shrink maps to 1x1), conv, norm, activation."""
    acts = {"relu": nn.ReLU(inplace=True), "lrelu": nn.LeakyReLU(0.2, inplace=True), "tanh": nn.Tanh(),
            "none": nn.Identity()}  # fmt: skip
    pad = (k - 1) // 2 if stride == 1 else (k - stride) // 2 + (k - stride) % 2
    padder = nn.ReflectionPad2d(pad) if pad_mode == "reflect" else nn.ZeroPad2d(pad)
    return nn.Sequential(padder, nn.Conv2d(cin, cout, k, stride), norm_layer(norm, cout), acts[act])


class ResBlock(nn.Module):
    def __init__(self, ch: int, norm: str):
        super().__init__()
        self.body = nn.Sequential(conv_block(ch, ch, 3, norm=norm), conv_block(ch, ch, 3, norm=norm, act="none"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ContentEncoder(nn.Module):
    """7x7 conv, ``n_down`` stride-2 4x4 convs doubling the width, ``n_res`` residual blocks."""

    def __init__(self, cin: int, dim: int = 64, n_down: int = 2, n_res: int = 4, norm: str = "bn"):
        super().__init__()
        layers: list[nn.Module] = [conv_block(cin, dim, 7, norm=norm)]
        for _ in range(n_down):
            layers.append(conv_block(dim, dim * 2, 4, 2, norm=norm))
            dim *= 2
        layers += [ResBlock(dim, norm) for _ in range(n_res)]
        self.model = nn.Sequential(*layers)
        self.out_dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class NoiseEncoder(nn.Module):
    """Noise branch E^N_X: same downsampling as the content encoder, 1x1 head to ``out_dim`` channels
    (twice that when it predicts a mean and a log-variance)."""

    def __init__(self, cin: int, dim: int, n_down: int, out_dim: int, norm: str = "bn"):
        super().__init__()
        layers: list[nn.Module] = [conv_block(cin, dim, 7, norm=norm)]
        for _ in range(n_down):
            layers.append(conv_block(dim, dim * 2, 4, 2, norm=norm))
            dim *= 2
        layers.append(nn.Conv2d(dim, out_dim, 1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class Decoder(nn.Module):
    """Residual blocks, ``n_up`` x (nearest upsample + 5x5 conv + layer norm) halving the width, 7x7 conv + tanh."""

    def __init__(self, cin: int, cout: int, n_up: int = 2, n_res: int = 4, norm: str = "bn"):
        super().__init__()
        layers: list[nn.Module] = [ResBlock(cin, norm) for _ in range(n_res)]
        dim = cin
        for _ in range(n_up):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), conv_block(dim, dim // 2, 5, norm="ln")]
            dim //= 2
        layers.append(conv_block(dim, cout, 7, act="tanh"))
        self.model = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.model(z)


class MultiScaleDiscriminator(nn.Module):
    """PatchGAN at ``scales`` resolutions (3x3 average-pool between scales); returns one logit map per scale.
    ``growth="double"``: each stride-2 layer doubles the width (UNIT's / the official LIR ``MsImageDis``)."""

    def __init__(self, cin: int, dim: int = 64, n_layer: int = 4, scales: int = 3, growth: str = "double"):
        super().__init__()
        self.down = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)
        self.nets = nn.ModuleList()
        widths = [dim * (2**i if growth == "double" else 1) for i in range(n_layer)]
        for _ in range(scales):
            layers: list[nn.Module] = [conv_block(cin, widths[0], 4, 2, act="lrelu", pad_mode="zeros")]
            layers += [
                conv_block(a, b, 4, 2, act="lrelu", pad_mode="zeros") for a, b in zip(widths, widths[1:], strict=False)
            ]
            layers.append(nn.Conv2d(widths[-1], 1, 1))
            self.nets.append(nn.Sequential(*layers))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for net in self.nets:
            outs.append(net(x))
            x = self.down(x)
        return outs


class RepresentationDiscriminator(nn.Module):
    """D_R: four stride-2 3x3 convs (leaky ReLU) + global average pooling + 1x1 conv; one logit per latent map."""

    def __init__(self, cin: int, widths: tuple[int, ...] = (32, 64, 128, 256)):
        super().__init__()
        layers: list[nn.Module] = []
        for w in widths:
            layers.append(conv_block(cin, w, 3, 2, act="lrelu", pad_mode="zeros"))
            cin = w
        layers += [nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, 1, 1)]
        self.model = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.model(z).flatten()


class PatchDiscriminator(nn.Module):
    """pix2pix's N-layer PatchGAN (stride-2 4x4 convs doubling the width up to 8x, batch norm, leaky ReLU), one logit
    per overlapping patch: SeNM-VAE's discriminator on noisy reconstructions."""

    def __init__(self, cin: int, dim: int = 64, n_layers: int = 3):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(cin, dim, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [nn.Conv2d(dim * prev, dim * mult, 4, stride, 1, bias=False), nn.BatchNorm2d(dim * mult),
                       nn.LeakyReLU(0.2, inplace=True)]  # fmt: skip
        layers.append(nn.Conv2d(dim * mult, 1, 4, 1, 1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
