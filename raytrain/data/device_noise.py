"""The noise models of :mod:`raytrain.data.degrade` on a batch of torch tensors, on the batch's device: how noise
resampled for every patch (``data.resample_noise``) is drawn after the batch reaches a worker, so the patch stream
carries clean 8-bit patches only and the noise costs the GPU microseconds instead of the data path's CPUs.

Each patch of the batch gets what the numpy model gives one image: the same distribution (per-patch level of blind
AWGN, shot and read noise, the camera's correlated field and tone curve, 8-bit quantisation), drawn from a seeded
``torch.Generator``: the same seed on the same device gives the same noise. No Ray, no numpy draws.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from raytrain.data.degrade import NoiseModel


def generator(device: torch.device, *keys: int) -> torch.Generator:
    """A generator on ``device`` seeded by integer keys (run seed, rank, domain, pass): one stream of draws each."""
    seed = 0
    for k in keys:
        seed = (seed * 1_000_003 + int(k) + 1) % (2**63 - 1)
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


def add_noise(model: NoiseModel, clean: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """``model``'s noisy version of every patch of ``clean`` (N, C, H, W) in [0, 1], float, on ``clean``'s device."""
    out = _noisy(model, clean.float(), gen)
    if model.params.get("quantize"):
        return torch.round(out.clamp(0, 1) * 255.0) / 255.0
    if model.params.get("clip"):
        return out.clamp(0, 1)
    return out


def _randn(like: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    return torch.randn(like.shape, generator=gen, device=like.device, dtype=like.dtype)


def _per_patch(like: torch.Tensor, value) -> torch.Tensor:
    return torch.as_tensor(value, dtype=like.dtype, device=like.device).reshape(-1, *([1] * (like.dim() - 1)))


def awgn(x: torch.Tensor, gen: torch.Generator, sigma) -> torch.Tensor:
    """Additive white Gaussian noise, ``sigma`` on the 0..255 scale: a number, or (lo, hi) for blind noise (a level
    drawn uniformly for each patch, as the numpy model draws one per image)."""
    if isinstance(sigma, (tuple, list)):
        u = torch.rand(x.shape[0], generator=gen, device=x.device, dtype=x.dtype)
        sigma = _per_patch(x, float(sigma[0]) + (float(sigma[1]) - float(sigma[0])) * u)
    return x + _randn(x, gen) * (sigma / 255.0)


def poisson_peak(x: torch.Tensor, gen: torch.Generator, peak: float) -> torch.Tensor:
    """Counts ~ Poisson(x * peak), returned as counts / peak."""
    return torch.poisson(x.clamp_min(0) * peak, generator=gen) / peak


def poisson_levels(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """``skimage.util.random_noise(mode="poisson")`` of each patch quantised to 8 bits: its counts scale is the
    power of two at or above its number of distinct levels, the result clipped to [0, 1]."""
    img8 = torch.round(x.clamp(0, 1) * 255.0) / 255.0
    scale = torch.tensor([2.0 ** math.ceil(math.log2(torch.unique(p).numel())) for p in img8], dtype=x.dtype,
                         device=x.device)  # fmt: skip
    scale = _per_patch(x, scale)
    return (torch.poisson(img8 * scale, generator=gen) / scale).clamp(0, 1)


def gauss_kernel(sigma: float, device, dtype) -> torch.Tensor:
    """scipy.ndimage.gaussian_filter's 1-D kernel (truncate 4), normalised."""
    radius = int(4.0 * sigma + 0.5)
    t = torch.arange(-radius, radius + 1, device=device, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return (k / k.sum()).to(dtype)


def _symmetric_pad(x: torch.Tensor, r: int, dim: int) -> torch.Tensor:
    """scipy's ``mode="reflect"`` (d c b a | a b c d) along ``dim`` by ``r`` (r <= size)."""
    n = x.shape[dim]
    if r == 0:
        return x
    if r > n:
        raise ValueError(f"a correlation kernel of radius {r} needs patches of at least {r} px (got {n})")
    head = x.narrow(dim, 0, r).flip(dim)
    tail = x.narrow(dim, n - r, r).flip(dim)
    return torch.cat([head, x, tail], dim)


def correlated_field(like: torch.Tensor, gen: torch.Generator, correlation: float) -> torch.Tensor:
    """Unit-variance Gaussian noise blurred by a Gaussian of ``correlation`` px along rows and columns of each
    channel (0: white), as :func:`raytrain.data.degrade.correlated_field`."""
    field = _randn(like, gen)
    if correlation <= 0:
        return field
    k = gauss_kernel(correlation, like.device, like.dtype)
    r = (k.numel() - 1) // 2
    n, c, h, w = field.shape
    flat = field.reshape(n * c, 1, h, w)
    flat = F.conv2d(_symmetric_pad(flat, r, 2), k.reshape(1, 1, -1, 1))
    flat = F.conv2d(_symmetric_pad(flat, r, 3), k.reshape(1, 1, 1, -1))
    return flat.reshape(n, c, h, w) / float((k.double() ** 2).sum())


def camera(x, gen, shot: float, read: float, correlation: float, gamma: float = 2.2) -> torch.Tensor:
    """Camera-like noise, as :func:`raytrain.data.degrade.camera`: linearise, add N(0, shot * signal + read)
    correlated as after demosaicing, clip, re-apply the tone curve, quantise to 8 bits."""
    lin = x.clamp(0, 1) ** gamma
    std = torch.sqrt(shot * lin + read)
    noisy = (lin + std * correlated_field(x, gen, correlation)).clamp(0, 1)
    return torch.round(noisy ** (1.0 / gamma) * 255.0) / 255.0


def heteroscedastic(x, gen, a: float, b: float) -> torch.Tensor:
    """Variance ``a * x + b``, pixel-independent."""
    return x + torch.sqrt((a * x + b).clamp_min(1e-12)) * _randn(x, gen)


def _noisy(model: NoiseModel, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    p = model.params
    if model.kind == "awgn":
        return awgn(x, gen, p["sigma"])
    if model.kind == "poisson":
        return poisson_levels(x, gen) if p["peak"] is None else poisson_peak(x, gen, p["peak"])
    if model.kind == "poisson_gaussian":
        return awgn(poisson_peak(x, gen, p["peak"]), gen, p["sigma"])
    if model.kind == "camera":
        return camera(x, gen, p["shot"], p["read"], p["correlation"], p["gamma"])
    if model.kind == "heteroscedastic":
        return heteroscedastic(x, gen, p["a"], p["b"])
    raise ValueError(f"unknown noise kind {model.kind!r}")
