"""Least-squares GAN losses over one logit tensor or a list of them (multi-scale discriminators)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _each(outs: torch.Tensor | list[torch.Tensor]) -> list[torch.Tensor]:
    return outs if isinstance(outs, list) else [outs]


def lsgan_target(outs: torch.Tensor | list[torch.Tensor], target: float) -> torch.Tensor:
    """sum over scales of mean((D - target)^2)."""
    return sum(((o - target) ** 2).mean() for o in _each(outs))


def lsgan_d(real: torch.Tensor | list[torch.Tensor], fake: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
    """Discriminator: real -> 1, fake -> 0."""
    return lsgan_target(real, 1.0) + lsgan_target(fake, 0.0)


def bce_target(outs: torch.Tensor | list[torch.Tensor], target: float) -> torch.Tensor:
    """Binary cross-entropy on logits against a constant target (1, 0, or 0.5 for 'confuse')."""
    return sum(F.binary_cross_entropy_with_logits(o, torch.full_like(o, target)) for o in _each(outs))


def ragan_d(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Relativistic average GAN (ESRGAN), discriminator side: real looks more real than the average fake, and fake
    less real than the average real. ``fake`` must be detached by the caller."""
    return (bce_target(real - fake.mean(), 1.0) + bce_target(fake - real.mean(), 0.0)) / 2


def ragan_g(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Relativistic average GAN, generator side (the targets swapped); ``real`` is detached here."""
    real = real.detach()
    return (bce_target(real - fake.mean(), 0.0) + bce_target(fake - real.mean(), 1.0)) / 2
