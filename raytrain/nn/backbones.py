"""Pretrained feature stacks with torchvision's state-dict key names (``features.N.weight``), so a local
``vgg19-*.pth`` / ``alexnet-*.pth`` from torchvision loads without torchvision (which does not import here).
Frozen, always in eval mode; gray inputs are repeated to 3 channels."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from raytrain.errors import RaytrainError
from raytrain.files import load_torch

_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]
# index of each conv in ``features`` (pre-ReLU outputs)
LAYERS = {"conv1_1": 0, "conv2_1": 5, "conv3_1": 10, "conv4_1": 19, "conv5_1": 28, "conv5_4": 34}
_MEAN, _STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def load_features(features: nn.Sequential, path: str | Path, arch: str) -> None:
    """Fill ``features`` from the ``features.*`` keys of a torchvision state dict file; a clear error otherwise."""
    state = load_torch(path, f"a torchvision {arch} state dict")
    if not isinstance(state, dict):
        raise RaytrainError(f"{path}: not a torchvision {arch} state dict (a {type(state).__name__})")
    mine = features.state_dict()
    feats = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
    missing = [k for k in mine if k not in feats or feats[k].shape != mine[k].shape]
    if missing:
        raise RaytrainError(
            f"{path}: not a torchvision {arch} state dict (missing or mis-shaped features.{missing[0]})"
        )
    features.load_state_dict({k: feats[k] for k in mine})


class VGG19Features(nn.Module):
    """``features[: LAYERS[layer] + 1]`` of torchvision's VGG-19; input in [0, 1], gray or RGB; frozen."""

    def __init__(self, layer: str = "conv5_1"):
        super().__init__()
        if layer not in LAYERS:
            raise ValueError(f"unknown VGG-19 layer {layer!r}; one of {sorted(LAYERS)}")
        mods: list[nn.Module] = []
        cin = 3
        for v in _CFG:
            if v == "M":
                mods.append(nn.MaxPool2d(2, 2))
            else:
                mods += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU(inplace=True)]
                cin = v
        self.features = nn.Sequential(*mods[: LAYERS[layer] + 1])
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def load_torchvision(self, path: str | Path) -> VGG19Features:
        """Load the ``features.*`` tensors of a torchvision VGG-19 state dict (extra classifier keys ignored)."""
        load_features(self.features, path, "VGG-19")
        return self

    def train(self, mode: bool = True) -> VGG19Features:
        return super().train(False)  # always in eval mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        return self.features((x - self.mean) / self.std)


class AlexNetFeatures(nn.Module):
    """torchvision AlexNet ``features`` returning the five ReLU outputs LPIPS compares; input in [-1, 1] (LPIPS'
    scaling layer is applied here)."""

    TAPS = (1, 4, 7, 9, 11)
    CHANNELS = (64, 192, 384, 256, 256)

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(inplace=False), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=False), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=False),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=False),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=False),
        )  # fmt: skip
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def load_torchvision(self, path: str | Path) -> AlexNetFeatures:
        load_features(self.features, path, "AlexNet")
        return self

    def train(self, mode: bool = True) -> AlexNetFeatures:
        return super().train(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        h, outs = (x - self.shift) / self.scale, []
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in self.TAPS:
                outs.append(h)
        return outs
