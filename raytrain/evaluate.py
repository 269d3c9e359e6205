"""Evaluation and inference helpers shared by the training loop and the CLI. Pure torch: no Ray, no MLflow."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from raytrain.metrics import psnr, ssim

Restorer = Callable[[torch.Tensor], torch.Tensor]


def to_tensor(img: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """(C, H, W) float array -> (1, C, H, W) tensor."""
    return torch.tensor(np.asarray(img, dtype=np.float32))[None].to(device)  # a copy: Ray arrays are read-only


@torch.no_grad()
def evaluate_pairs(
    restore: Restorer, pairs: list[tuple[np.ndarray, np.ndarray]], device: torch.device | str = "cpu"
) -> list[dict[str, float]]:
    """Per-image PSNR/SSIM of the noisy input and of the restored output against clean; (C, H, W) pairs."""
    rows = []
    for noisy, clean in pairs:
        x, y = to_tensor(noisy, device), to_tensor(clean, device)
        out = restore(x).clamp(0, 1)
        rows.append({
            "psnr_noisy": float(psnr(x.clamp(0, 1), y)), "ssim_noisy": float(ssim(x.clamp(0, 1), y)),
            "psnr": float(psnr(out, y)), "ssim": float(ssim(out, y)),
        })  # fmt: skip
    return rows


def image_grid(columns: list[np.ndarray], gap: int = 4) -> np.ndarray:
    """Side-by-side (H, W, C) grid of same-size (C, H, W) images, white gaps; for 'noisy | output | clean'."""
    tiles = [np.clip(c.transpose(1, 2, 0), 0, 1) for c in columns]
    h, c = tiles[0].shape[0], tiles[0].shape[2]
    sep = np.ones((h, gap, c), np.float32)
    parts: list[np.ndarray] = []
    for t in tiles:
        parts += [t, sep]
    return np.concatenate(parts[:-1], axis=1)
