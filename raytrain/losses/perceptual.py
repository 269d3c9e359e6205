"""Perceptual distances on frozen pretrained features (weights from local files; no downloads).

- :class:`VGGPerceptual`: L1 between VGG-19 conv5_4 features (pre-activation), ESRGAN/BasicSR's perceptual loss.
- :class:`LPIPS`: Zhang et al.'s LPIPS v0.1 on AlexNet, the official SeNM-VAE's choice: unit-normalised features of
  five ReLU layers, squared differences weighted by learned 1x1 "lin" layers, averaged over space, summed.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from raytrain.errors import RaytrainError
from raytrain.files import load_torch
from raytrain.nn.backbones import AlexNetFeatures, VGG19Features


class VGGPerceptual(nn.Module):
    def __init__(self, features: VGG19Features):
        super().__init__()
        self.features = features

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Mean L1 distance of features; inputs in [0, 1]."""
        return (self.features(a) - self.features(b)).abs().mean()


class LPIPS(nn.Module):
    def __init__(self, alexnet: AlexNetFeatures, lin_weights: str | Path | None = None):
        super().__init__()
        self.net = alexnet
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in AlexNetFeatures.CHANNELS)
        if lin_weights is None:  # random backbone for tests: equal weights per channel
            for lin, c in zip(self.lins, AlexNetFeatures.CHANNELS, strict=True):
                nn.init.constant_(lin.weight, 1.0 / c)
        else:
            state = load_torch(lin_weights, "LPIPS v0.1 AlexNet lin layers")
            try:
                for i, lin in enumerate(self.lins):
                    lin.weight.data.copy_(state[f"lin{i}.model.1.weight"])
            except (KeyError, RuntimeError, TypeError):
                raise RaytrainError(
                    f"{lin_weights}: not LPIPS v0.1 AlexNet lin layers (lin0.model.1.weight..)"
                ) from None
        self.requires_grad_(False)

    @staticmethod
    def _unit(f: torch.Tensor) -> torch.Tensor:
        return f / (f.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Per-image LPIPS distance (N,); inputs in [0, 1]."""
        fa, fb = self.net(a * 2 - 1), self.net(b * 2 - 1)
        return sum(lin((self._unit(x) - self._unit(y)).pow(2)).mean(dim=(1, 2, 3))
                   for lin, x, y in zip(self.lins, fa, fb, strict=True))  # fmt: skip


def build_perceptual(kind: str, backbone_file: str | None, lin_file: str | None, random: bool) -> nn.Module:
    """``vgg`` or ``lpips`` from local weight files (``random=True``: random backbone, tests only).

    Raises FileNotFoundError naming the missing file, RaytrainError for a file of the wrong kind."""
    for f in (backbone_file, lin_file if kind == "lpips" else None):
        if not random and f is not None and not Path(f).is_file():
            raise FileNotFoundError(f)
    if kind == "vgg":
        vgg = VGG19Features("conv5_4")
        return VGGPerceptual(vgg if random else vgg.load_torchvision(backbone_file))
    alex = AlexNetFeatures()
    return LPIPS(alex if random else alex.load_torchvision(backbone_file), None if random else lin_file)
