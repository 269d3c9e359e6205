"""Supervised denoiser training on (clean, noisy) patch pairs."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from raytrain.config import RunConfig
from raytrain.methods.base import Method, StepOutput, make_scheduler
from raytrain.methods.denoiser.nets import DnCNN


class SupervisedDenoiser(Method):
    """DnCNN trained with L2 (or L1) between its output and the clean patch, on the paired domain."""

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
        net = DnCNN(self.channels, m.depth, m.width, m.batch_norm)
        self.nets["denoiser"] = net.to(device) if inference else self.prepare(net)
        if inference:
            return
        tc = cfg.train
        self.optimizers["denoiser"] = torch.optim.Adam(
            self.nets["denoiser"].parameters(), lr=tc.lr, weight_decay=tc.weight_decay
        )
        self.schedulers["denoiser"] = make_scheduler(self.optimizers["denoiser"], tc)
        self._loss = F.mse_loss if m.loss == "l2" else F.l1_loss

    def train_step(self, batches: dict[str, dict[str, torch.Tensor]], step: int) -> StepOutput:
        pair = batches["paired"]
        net = self.nets["denoiser"]
        out = net(pair["noisy"])
        loss = self._loss(out, pair["clean"])
        applied = self.update(loss, self.optimizers["denoiser"], net.parameters())
        return StepOutput({"loss": float(loss.detach())}, skipped=not applied)

    @torch.no_grad()
    def restore(self, noisy: torch.Tensor) -> torch.Tensor:
        return self.nets["denoiser"](noisy)
