"""The perceptual-loss keys a method config shares (SeNM-VAE's LPIPS on the noisy reconstruction, ESRGAN's VGG-19
on the SR output): their check at load and the loss net built from them. No torch at import time."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from raytrain.errors import ConfigError, RaytrainError

if TYPE_CHECKING:
    import torch
    from torch import nn


def perceptual_problem(m: Any) -> str | None:
    """What is missing for ``m.perceptual`` (a config with ``perceptual``, ``perceptual_backbone``,
    ``perceptual_weights``, ``lpips_weights``), as a message naming the key; None when nothing is."""
    if m.perceptual == "none" or m.perceptual_backbone != "pretrained":
        return None
    if m.perceptual_weights is None:
        net = "VGG-19" if m.perceptual == "vgg" else "AlexNet"
        return (f"perceptual={m.perceptual} needs method.perceptual_weights: a local torchvision {net} .pth "
                "(no download happens); or perceptual=none")  # fmt: skip
    if m.perceptual == "lpips" and m.lpips_weights is None:
        return "perceptual=lpips needs method.lpips_weights: the LPIPS v0.1 linear layers (alex.pth)"
    return None


def build_perceptual_loss(m: Any, seed: int, device: torch.device) -> nn.Module | None:
    """The frozen perceptual net of ``m`` on ``device`` (None when ``perceptual`` is none or its weight 0); a random
    backbone is seeded, so it is the same on every rank. Missing or wrong files are one ConfigError line."""
    if m.perceptual == "none" or m.perceptual_weight == 0:
        return None
    try:
        net = seeded_perceptual(m.perceptual, m.perceptual_weights, m.lpips_weights,
                                m.perceptual_backbone == "random", seed,
                                ("method.perceptual_weights", "method.lpips_weights"))  # fmt: skip
    except ConfigError:
        raise
    except RaytrainError as exc:
        raise ConfigError(f"method.perceptual_weights: {exc}") from None
    return net.to(device)


def seeded_perceptual(kind: str, backbone: Any, lin: Any, random: bool, seed: int, keys: tuple[str, str]
                      ) -> nn.Module:  # fmt: skip
    """:func:`raytrain.losses.perceptual.build_perceptual` with torch seeded by ``seed`` (a random backbone is the
    same every time; the caller's random state is left as it was); a missing file is one ConfigError line naming its
    key (``keys``: the backbone file's, the LPIPS lin file's)."""
    import torch

    from raytrain.losses.perceptual import build_perceptual

    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return build_perceptual(kind, backbone, lin, random)
    except FileNotFoundError as exc:
        key = keys[1] if lin is not None and str(exc) == str(lin) else keys[0]
        raise ConfigError(f"{key}: {exc} not found; put the weight file there (no downloads)") from None
