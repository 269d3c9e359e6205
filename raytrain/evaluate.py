"""Evaluation and inference helpers shared by the training loop and the CLI. Pure torch: no Ray, no MLflow."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from raytrain.data.images import bit_depth, quantize
from raytrain.data.resize import bicubic_up
from raytrain.layout import chw, to_image, to_tensor
from raytrain.metrics import (
    akld,
    frechet_distance,
    intensity_profile,
    kld_noise_residual,
    kld_noisy_histogram,
    noise_correlation,
    psnr,
    ssim,
)

Restorer = Callable[[torch.Tensor], torch.Tensor]


def tiled(restore: Restorer, tile: int = 512, overlap: int = 32) -> Restorer:
    """``restore`` applied to overlapping ``tile`` x ``tile`` pieces of an image larger than a tile, each piece's
    output kept without the outer ``overlap / 2`` pixels on the sides it shares with a neighbour: exact for a net whose
    receptive field reaches at most ``overlap / 2`` pixels, and bounded memory for whole photographs."""
    if overlap % 2 or not 0 <= overlap < tile:
        raise ValueError(f"overlap must be even and in [0, tile) (got {overlap} for tile {tile})")
    m = overlap // 2

    def starts(n: int) -> list[int]:
        out = list(range(0, max(n - tile, 0) + 1, tile - overlap))
        return out + [n - tile] if out[-1] + tile < n else out

    @torch.no_grad()
    def run(x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h <= tile and w <= tile:
            return restore(x)
        out, r = None, 1  # r: the output's scale (a super-resolution net's output is r times its input)
        for y0 in starts(h):
            for x0 in starts(w):
                inp = x[..., y0 : y0 + tile, x0 : x0 + tile]
                piece = restore(inp)
                if out is None:
                    r = piece.shape[-1] // inp.shape[-1]
                    out = piece.new_zeros((*piece.shape[:-2], h * r, w * r))
                th, tw = inp.shape[-2:]
                a, b = (m if y0 else 0), th - (m if y0 + th < h else 0)
                c, d = (m if x0 else 0), tw - (m if x0 + tw < w else 0)
                out[..., (y0 + a) * r : (y0 + b) * r, (x0 + c) * r : (x0 + d) * r] = piece[..., a * r : b * r,
                                                                                          c * r : d * r]  # fmt: skip
        return out

    return run


@torch.no_grad()
def evaluate_pairs(
    restore: Restorer,
    pairs: list[tuple[np.ndarray, np.ndarray]],
    device: torch.device | str = "cpu",
    data_range: float = 1.0,
    lpips: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> list[dict[str, float]]:
    """Per-image PSNR/SSIM (and ``lpips`` distance, when given an LPIPS net) of the noisy input and of the restored
    output against clean; (clean, noisy) HWC pairs with values in [0, data_range]. An (HR, LR) pair (super-resolution)
    scores the LR input bicubic-upscaled to the HR size as its ``*_noisy`` baseline."""
    rows = []
    for clean, noisy in pairs:
        x, y = to_tensor(noisy, device), to_tensor(clean, device)
        xc, out = x.clamp(0, data_range), restore(x).clamp(0, data_range)
        if xc.shape[-2:] != y.shape[-2:]:
            xc = bicubic_up(xc / data_range, y.shape[-2:]) * data_range
        row = {
            "psnr_noisy": float(psnr(xc, y, data_range)), "ssim_noisy": float(ssim(xc, y, data_range)),
            "psnr": float(psnr(out, y, data_range)), "ssim": float(ssim(out, y, data_range)),
        }  # fmt: skip
        if lpips is not None:
            to3 = (lambda t: t.expand(-1, 3, -1, -1) / data_range) if y.shape[1] == 1 else (lambda t: t / data_range)
            row["lpips_noisy"] = float(lpips(to3(xc), to3(y)).mean())
            row["lpips"] = float(lpips(to3(out), to3(y)).mean())
        rows.append(row)
    return rows


def image_grid(columns: list[np.ndarray], gap: int = 4) -> np.ndarray:
    """Side-by-side (H, W, C) grid of same-size HWC images, white gaps; for 'noisy | output | clean'."""
    tiles = [np.clip(c, 0, 1) for c in columns]
    h, c = tiles[0].shape[0], tiles[0].shape[2]
    sep = np.ones((h, gap, c), np.float32)
    parts: list[np.ndarray] = []
    for t in tiles:
        parts += [t, sep]
    return np.concatenate(parts[:-1], axis=1)


Synthesizer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@torch.no_grad()
def noise_rows(
    synthesize: Synthesizer,
    pairs: list[tuple[np.ndarray, np.ndarray]],
    device: torch.device | str = "cpu",
    keep: list[np.ndarray] | None = None,
) -> list[dict[str, float]]:
    """Noise quality of a noise model on real (clean, noisy) HWC pairs: for each, synthesise a noisy image from
    the clean one at the real pair's level (std of noisy - clean), 8-bit as written to disk, and compare.

    Keys: ``kld`` (residual histograms, KL(real || generated)), ``kld_noisy`` (the official SeNM-VAE definition:
    grayscale uint8 noisy-image histograms, KL(generated || real)), ``akld`` (DANet's AKLD term: KL of the local
    noise variances, :func:`raytrain.metrics.akld`), ``noise_std`` / ``noise_std_real`` (0..255 scale),
    ``rho`` / ``rho_real`` (lag-1 spatial correlation of the noise, the mean of both axes, which both histograms
    are blind to), and per axis and lag ``rho_h``, ``rho_v``, ``rho_h2``, ``rho_v2`` (along rows / columns, lag 1 /
    2; :func:`raytrain.metrics.noise_correlation`) with their ``_real`` counterparts; ``noise_std_dark`` /
    ``noise_std_bright`` (and ``_real``): the noise's std over the darkest / brightest quarter of the clean image's
    pixels (0..255; how the level follows the signal, e.g. shot noise through a tone curve).
    ``keep``, if given, receives each synthetic noisy image (for :func:`noise_fid`).
    """
    rows = []
    for clean, noisy in pairs:
        real = np.asarray(noisy, np.float64) - clean
        level = torch.tensor(float(np.std(real, ddof=1)), device=device).view(1, 1, 1, 1)
        gen_noisy = quantize(to_image(synthesize(to_tensor(clean, device), level)), bit_depth([noisy]))
        if keep is not None:
            keep.append(gen_noisy)
        gen = gen_noisy - clean
        rho, rho_real = noise_correlation(gen), noise_correlation(real)
        profile = intensity_profile(gen, clean) | {f"{k}_real": v for k, v in intensity_profile(real, clean).items()}
        rows.append({
            "kld": kld_noise_residual(real, gen), "kld_noisy": kld_noisy_histogram(gen_noisy, np.asarray(noisy)),
            "akld": akld(noisy, gen_noisy, clean),
            "noise_std": float(gen.std() * 255), "noise_std_real": float(real.std() * 255),
            "rho": (rho["rho_h"] + rho["rho_v"]) / 2, "rho_real": (rho_real["rho_h"] + rho_real["rho_v"]) / 2,
            **rho, **{f"{k}_real": v for k, v in rho_real.items()}, **profile,
        })  # fmt: skip
    return rows


def tiles(img: np.ndarray, size: int) -> list[np.ndarray]:
    """Non-overlapping ``size`` x ``size`` tiles of an HWC image (the whole image if it is smaller)."""
    h, w = img.shape[:2]
    if h < size or w < size:
        return [img]
    starts = [(i, j) for i in range(0, h - size + 1, size) for j in range(0, w - size + 1, size)]
    return [img[i : i + size, j : j + size] for i, j in starts]


@torch.no_grad()
def inception_features(net: torch.nn.Module, images: list[np.ndarray], patch: int, batch: int = 16) -> np.ndarray:
    """Pool features of every ``patch`` tile of HWC images in [0, 1]: (N, 2048)."""
    parts = [chw(t) for img in images for t in tiles(np.asarray(img, np.float32), patch)]
    feats = [net(torch.tensor(np.stack(parts[i : i + batch]))).numpy() for i in range(0, len(parts), batch)]
    return np.concatenate(feats)


def noise_fid(net: torch.nn.Module, real_noisy: list[np.ndarray], gen_noisy: list[np.ndarray], patch: int = 64
              ) -> float:  # fmt: skip
    """FID between real and synthetic noisy images, over their ``patch`` tiles (as noise-modelling papers score
    noisy patches rather than whole photographs)."""
    return frechet_distance(inception_features(net, real_noisy, patch), inception_features(net, gen_noisy, patch))
