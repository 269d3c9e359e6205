"""The toy method: one convolution, L2 to the clean patch."""

import torch
import torch.nn.functional as F
from torch import nn

from raytrain.methods.base import Method, StepOutput, make_scheduler


class Toy(Method):
    name = "toy"
    domains = ("paired",)
    inference_nets = ("net",)

    def __init__(self, cfg, device, prepare=None, inference=False):
        super().__init__(cfg, device, prepare)
        k = cfg.method.kernel
        net = nn.Conv2d(self.channels, self.channels, k, padding=k // 2)
        self.nets["net"] = net.to(device) if inference else self.prepare(net)
        if inference:
            return
        self.optimizers["net"] = torch.optim.Adam(self.nets["net"].parameters(), lr=cfg.train.lr)
        self.schedulers["net"] = make_scheduler(self.optimizers["net"], cfg.train)

    def train_step(self, batches, step):
        pair = batches["paired"]
        loss = F.mse_loss(self.nets["net"](pair["noisy"]), pair["clean"])
        applied = self.update(loss, self.optimizers["net"], self.nets["net"].parameters())
        return StepOutput({"loss": float(loss.detach())}, skipped=not applied)

    @torch.no_grad()
    def restore(self, noisy):
        return self.nets["net"](noisy)
