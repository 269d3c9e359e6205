"""The noise levels a SeNM-VAE saw in training: the prior for synthesis and the range a requested level must lie in."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


class LevelStats(nn.Module):
    """A ring buffer of the most recent ``size`` levels (std on the [0, 1] scale): true levels of paired patches and
    the level net's predictions on target patches. Buffers only, so it travels in checkpoints and inference files.

    Recent rather than all: the level net's first predictions are untrained and would stretch the range."""

    def __init__(self, size: int = 4096):
        super().__init__()
        self.register_buffer("values", torch.zeros(size))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def add(self, levels: torch.Tensor) -> None:
        """Record a batch of levels; across Ray Train ranks, every rank records every rank's (buffers stay equal)."""
        levels = levels.detach().float().flatten()
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            parts = [torch.empty_like(levels) for _ in range(dist.get_world_size())]
            dist.all_gather(parts, levels)
            levels = torch.cat(parts)
        size = self.values.numel()
        idx = (self.count + torch.arange(levels.numel(), device=levels.device)) % size
        self.values[idx.to(self.values.device)] = levels.to(self.values.device)
        self.count += levels.numel()

    def seen(self) -> torch.Tensor:
        return self.values[: int(min(int(self.count), self.values.numel()))]

    def range(self) -> tuple[float, float]:
        s = self.seen()
        return (float(s.min()), float(s.max())) if s.numel() else (0.0, 0.0)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        s = self.seen()
        if not s.numel():
            raise ValueError("this SeNM-VAE has seen no noise levels (untrained); give a level explicitly")
        return s[torch.randint(s.numel(), (n,), generator=generator, device=s.device)]
