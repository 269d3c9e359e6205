"""VGG-19 feature stack with torchvision's state-dict key names (``features.N.weight``), so a local
``vgg19-*.pth`` from torchvision loads without torchvision. Truncated after the layer a loss needs."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]
# index of each conv in ``features`` (pre-ReLU outputs)
LAYERS = {"conv1_1": 0, "conv2_1": 5, "conv3_1": 10, "conv4_1": 19, "conv5_1": 28}
_MEAN, _STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


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
        state = torch.load(path, map_location="cpu", weights_only=True)
        mine = self.features.state_dict()
        feats = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
        missing = [k for k in mine if k not in feats]
        if missing:
            raise ValueError(f"{path}: not a torchvision VGG-19 state dict (missing features.{missing[0]})")
        self.features.load_state_dict({k: feats[k] for k in mine})
        return self

    def train(self, mode: bool = True) -> VGG19Features:
        return super().train(False)  # always in eval mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        return self.features((x - self.mean) / self.std)
