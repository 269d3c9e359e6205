"""The noise levels a SeNM-VAE saw in training: the prior synthesis draws levels from, and the range a requested level
must lie in."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


def _gather(t: torch.Tensor) -> torch.Tensor:
    """Every rank's values (Ray Train workers): each rank records all of them, so the buffers stay equal."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, t)
        return torch.cat(parts)
    return t


class LevelStats(nn.Module):
    """Two ring buffers of the most recent ``size`` levels (std of y - x on the [0, 1] scale): the true levels of
    paired patches, and the level net's predictions on target patches (clamped at 0: a std is not negative). Plus a
    running mean of the level net's error on pairs and of the paired levels. Buffers only, so it travels in
    checkpoints and inference files.

    The synthesis prior is the paired levels, joined by the predictions made while the level net's running error was
    below ``tolerance`` times the running mean level: an untrained level net's guesses never become synthesis levels."""

    def __init__(self, size: int = 4096, tolerance: float = 0.2, momentum: float = 0.02):
        super().__init__()
        self.tolerance, self.momentum = tolerance, momentum
        for kind in ("paired", "predicted"):
            self.register_buffer(kind, torch.zeros(size))
            self.register_buffer(f"{kind}_count", torch.zeros((), dtype=torch.long))
        self.register_buffer("error", torch.full((), float("inf")))  # running mean |level - prediction| on pairs
        self.register_buffer("level_mean", torch.zeros(()))  # running mean paired level
        self.register_buffer("temperature", torch.ones(()))  # the calibrated synthesis temperature (method.temperature)

    @torch.no_grad()
    def add(self, levels: torch.Tensor, error: torch.Tensor | None = None, predicted: bool = False) -> None:
        """Record a batch of true paired levels (with the level net's ``error`` on them) or of predictions."""
        levels = _gather(levels.detach().float().flatten())
        kind = "predicted" if predicted else "paired"
        if predicted:  # only a trusted level net's predictions are kept (an untrained one's would stretch the range)
            if not self.predictions_trusted:
                return
            levels = levels.clamp(min=0)
        buf, count = getattr(self, kind), getattr(self, f"{kind}_count")
        idx = (count + torch.arange(levels.numel(), device=levels.device)) % buf.numel()
        buf[idx.to(buf.device)] = levels.to(buf.device)
        count += levels.numel()
        if error is not None:
            err = float(_gather(error.detach().float().flatten()).mean())
            first, k = not torch.isfinite(self.error), self.momentum
            self.error.fill_(err if first else (1 - k) * float(self.error) + k * err)
            mean = float(levels.mean())
            self.level_mean.fill_(mean if first else (1 - k) * float(self.level_mean) + k * mean)

    def _seen(self, kind: str) -> torch.Tensor:
        buf = getattr(self, kind)
        return buf[: int(min(int(getattr(self, f"{kind}_count")), buf.numel()))]

    @property
    def predictions_trusted(self) -> bool:
        return bool(torch.isfinite(self.error)) and float(self.error) < self.tolerance * float(self.level_mean)

    def prior(self) -> torch.Tensor:
        """The levels synthesis draws from: the paired ones and the trusted predictions."""
        return torch.cat([self._seen("paired"), self._seen("predicted")])

    def range(self) -> tuple[float, float]:
        s = self.prior()
        return (float(s.min()), float(s.max())) if s.numel() else (0.0, 0.0)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        s = self.prior()
        if not s.numel():
            raise ValueError("this SeNM-VAE has seen no noise levels (untrained); give a level explicitly")
        return s[torch.randint(s.numel(), (n,), generator=generator, device=s.device)]

    def summary(self) -> dict[str, float]:
        """Figures for the run's log (0..255 scale): the true paired levels beside the prior synthesis draws from."""
        out: dict[str, float] = {}
        for name, vals in (("paired", self._seen("paired")), ("prior", self.prior())):
            if vals.numel():
                out |= {f"level_{name}_mean": float(vals.mean()) * 255, f"level_{name}_min": float(vals.min()) * 255,
                        f"level_{name}_max": float(vals.max()) * 255}  # fmt: skip
        out["level_net_error"] = float(self.error) * 255 if torch.isfinite(self.error) else float("nan")
        out["level_predictions"] = float(self._seen("predicted").numel())
        return out
