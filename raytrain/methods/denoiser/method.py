"""Supervised denoiser training (DnCNN, DRUNet) on (clean, noisy) patch pairs."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from raytrain.methods.base import Method, StepOutput, make_scheduler
from raytrain.methods.denoiser.nets import DnCNN, DRUNet

if TYPE_CHECKING:
    from raytrain.config import RunConfig


def estimate_level(noisy: torch.Tensor) -> torch.Tensor:
    """Per-image noise std (N, 1, 1, 1) on the [0, 1] scale by scikit-image's wavelet (MAD) estimator."""
    from skimage.restoration import estimate_sigma

    arr = noisy.detach().float().cpu().numpy()
    est = [float(np.mean(estimate_sigma(a, channel_axis=0))) for a in arr]
    return torch.tensor(est, device=noisy.device).view(-1, 1, 1, 1)


class SupervisedDenoiser(Method):
    """A denoiser trained with L2 (or L1) between its output and the clean patch, on the paired domain (real pairs,
    synthetic noise, or the pairs a noise model synthesised: ``data.synthetic``)."""

    name = "dncnn"
    domains = ("paired",)
    inference_nets = ("denoiser",)

    def __init__(
        self,
        cfg: RunConfig,
        device: torch.device,
        prepare: Callable[[nn.Module], nn.Module] | None = None,
        inference: bool = False,
    ):
        super().__init__(cfg, device, prepare)
        m = cfg.method
        self.name = m.name
        if m.name == "drunet":
            net: nn.Module = DRUNet(self.channels, tuple(m.widths), m.blocks, m.noise_map)
        else:
            net = DnCNN(self.channels, m.depth, m.width, m.batch_norm)
        self.noise_map = getattr(m, "noise_map", False)
        self.level: float | None = None  # a fixed level (0..1 scale) for noise-map nets; None: estimated per image
        self.nets["denoiser"] = net.to(device) if inference else self.prepare(net)
        if inference:
            return
        tc = cfg.train
        self.optimizers["denoiser"] = torch.optim.Adam(
            self.nets["denoiser"].parameters(), lr=tc.lr, weight_decay=tc.weight_decay
        )
        self.schedulers["denoiser"] = make_scheduler(self.optimizers["denoiser"], tc)
        self._loss = F.mse_loss if m.loss == "l2" else F.l1_loss

    def _forward(self, noisy: torch.Tensor, level: torch.Tensor | None) -> torch.Tensor:
        net = self.nets["denoiser"]
        return net(noisy, level) if self.noise_map else net(noisy)

    def train_step(self, batches: dict[str, dict[str, torch.Tensor]], step: int) -> StepOutput:
        pair = batches["paired"]
        level = (pair["noisy"] - pair["clean"]).std(dim=(1, 2, 3), keepdim=True) if self.noise_map else None
        out = self._forward(pair["noisy"], level)
        loss = self._loss(out, pair["clean"])
        applied = self.update(loss, self.optimizers["denoiser"], self.nets["denoiser"].parameters())
        return StepOutput({"loss": float(loss.detach())}, skipped=not applied)

    @torch.no_grad()
    def restore(self, noisy: torch.Tensor) -> torch.Tensor:
        level = None
        if self.noise_map:
            fixed = self.level
            level = estimate_level(noisy) if fixed is None else torch.full((noisy.shape[0], 1, 1, 1), fixed)
        return self._forward(noisy, None if level is None else level.to(noisy.device))
