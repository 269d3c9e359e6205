"""``train.precision`` as one object: autocast for the forward passes and loss terms, a GradScaler for fp16.

fp32: nothing changes. bf16: forward passes under ``torch.autocast`` (bf16 has fp32's range: no scaling; runs on CPU
and GPU). fp16: autocast plus a ``GradScaler`` (GPU only, checked at config load). Backward passes run outside
autocast, losses are summed in fp32, and PyTorch's autocast op lists keep the reductions, exp / log (the KL and GAN
terms) and the losses' own ops in fp32 where they need the range.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class Precision:
    def __init__(self, precision: str, device: torch.device | str):
        self.name = precision
        self.dtype = DTYPES[precision]
        self.device_type = torch.device(device).type
        self.scaler = torch.amp.GradScaler(self.device_type, enabled=precision == "fp16")

    @property
    def scaling(self) -> bool:
        return self.scaler.is_enabled()

    def autocast(self):
        """The context a training step's forward passes run in."""
        return torch.autocast(self.device_type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None)

    def backward(self, loss: torch.Tensor) -> None:
        with torch.autocast(self.device_type, enabled=False):
            self.scaler.scale(loss.float()).backward()

    def unscale(self, opts: Sequence[torch.optim.Optimizer]) -> None:
        """True gradients before clipping and the norm guard (fp16: divided by the scale)."""
        if self.scaling:
            for o in opts:
                self.scaler.unscale_(o)

    def step(self, opts: Sequence[torch.optim.Optimizer]) -> None:
        for o in opts:
            self.scaler.step(o)  # a plain o.step() when scaling is off
        if self.scaling:
            self.scaler.update()

    def skipped(self) -> None:
        """An update the guard refused: fp16 lowers the scale (an overflow is how a too-high scale shows)."""
        if self.scaling:
            self.scaler.update()

    def state_dict(self) -> dict:
        return self.scaler.state_dict() if self.scaling else {}

    def load_state_dict(self, state: dict) -> None:
        if self.scaling and state:
            self.scaler.load_state_dict(state)
