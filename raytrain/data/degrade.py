"""Noise models, pure numpy and seeded: every function takes an image in [0, 1] (H, W, C) float32 and a
``numpy.random.Generator`` and returns the noisy image as float32.

No Ray, no torch: these run in Ray Data tasks, in the driver, and in tests alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from raytrain.data.images import quantize8

# Camera presets: shot = variance per unit of linear signal, read = variance floor, correlation = blur sigma (px)
# of the noise field (as after demosaicing). On mid-grey (0.5) the 8-bit noise std is ~4 / 8 / 17 levels.
CAMERA_PRESETS = {
    "low": {"shot": 0.0008, "read": 1.0e-5, "correlation": 0.5},
    "mid": {"shot": 0.004, "read": 6.0e-5, "correlation": 0.7},
    "high": {"shot": 0.016, "read": 2.5e-4, "correlation": 0.9},
}


def awgn(img: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Additive white Gaussian noise, ``sigma`` on the 0..255 scale; not clipped (as DnCNN synthesises it; the noise
    config's ``clip`` / ``quantize`` clip and round it, as the official LIR data is)."""
    return (img + rng.standard_normal(img.shape, dtype=np.float32) * np.float32(sigma / 255.0)).astype(np.float32)


def poisson_skimage(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``skimage.util.random_noise(mode="poisson")`` on the image quantised to 8 bits (counts = 8-bit levels)."""
    from skimage.util import random_noise  # here: ~0.15 s to import, for this noise only

    img8 = quantize8(img)
    seed = int(rng.integers(0, 2**31 - 1))
    return random_noise(img8, mode="poisson", rng=seed, clip=True).astype(np.float32)


def poisson_peak(img: np.ndarray, rng: np.random.Generator, peak: float) -> np.ndarray:
    """Peak-scaled Poisson: white = ``peak`` photons; counts ~ Poisson(img * peak), returned as counts / peak."""
    counts = rng.poisson(np.clip(img, 0, None).astype(np.float64) * peak)
    return (counts / peak).astype(np.float32)


def poisson_gaussian(img: np.ndarray, rng: np.random.Generator, peak: float, sigma: float) -> np.ndarray:
    """Poisson shot noise at ``peak`` plus Gaussian read noise ``sigma`` (0..255 scale)."""
    return awgn(poisson_peak(img, rng, peak), rng, sigma)


def correlated_field(shape: tuple[int, ...], rng: np.random.Generator, correlation: float) -> np.ndarray:
    """Unit-variance Gaussian noise, spatially correlated by a Gaussian blur of ``correlation`` px (0 = white)."""
    field = rng.standard_normal(shape)
    if correlation > 0:
        from scipy.ndimage import gaussian_filter  # here: scipy only where noise is correlated

        sig = (correlation, correlation) + (0,) * (len(shape) - 2)
        field = gaussian_filter(field, sigma=sig, mode="reflect")
        # Variance of a blurred white field = product over the two axes of the sum of squared kernel taps.
        field /= _gauss_energy(correlation)
    return field


def _gauss_energy(sigma: float) -> float:
    radius = int(4.0 * sigma + 0.5)  # scipy's default truncate=4.0
    x = np.arange(-radius, radius + 1)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    k /= k.sum()
    return float(np.sum(k**2))  # per axis; two axes multiply


def camera(
    img: np.ndarray,
    rng: np.random.Generator,
    shot: float,
    read: float,
    correlation: float,
    gamma: float = 2.2,
) -> np.ndarray:
    """Camera-like noise: linearise (``img ** gamma``), add N(0, shot * signal + read) correlated as after
    demosaicing, clip, re-apply gamma and quantise to 8 bits."""
    lin = np.clip(img, 0, 1).astype(np.float64) ** gamma
    std = np.sqrt(shot * lin + read)
    noisy_lin = np.clip(lin + std * correlated_field(img.shape, rng, correlation), 0, 1)
    return (np.round(noisy_lin ** (1.0 / gamma) * 255.0) / 255.0).astype(np.float32)


def heteroscedastic(img: np.ndarray, rng: np.random.Generator, a: float, b: float) -> np.ndarray:
    """Signal-dependent Gaussian noise: variance ``a * img + b`` (both on the [0, 1] scale), pixel-independent."""
    std = np.sqrt(np.clip(a * img.astype(np.float64) + b, 1e-12, None))
    return (img + std * rng.standard_normal(img.shape)).astype(np.float32)


def fit_gaussian(pairs: list[tuple[np.ndarray, np.ndarray]]) -> NoiseModel:
    """AWGN with the std of the residuals (noisy - clean) of ``pairs`` [(clean, noisy), ...], pooled."""
    res = np.concatenate([(n.astype(np.float64) - c).ravel() for c, n in pairs])
    return NoiseModel("awgn", {"sigma": float(res.std() * 255.0)})


def fit_heteroscedastic(pairs: list[tuple[np.ndarray, np.ndarray]], bins: int = 32) -> NoiseModel:
    """Variance = a * clean + b, least squares on the residual variance of ``bins`` clean-intensity bins (each
    weighted by its pixel count) with a, b >= 0: where the unconstrained slope is negative (a tone curve can make the
    darks the noisiest) the best flat model, b = the bins' weighted mean variance; where the intercept is, the best
    line through 0."""
    clean = np.concatenate([c.astype(np.float64).ravel() for c, _ in pairs])
    res = np.concatenate([(n.astype(np.float64) - c).ravel() for c, n in pairs])
    idx = np.minimum((np.clip(clean, 0, 1) * bins).astype(int), bins - 1)
    count = np.bincount(idx, minlength=bins)
    keep = count > 1
    mean = np.bincount(idx, clean, bins)[keep] / count[keep]
    var = (np.bincount(idx, res**2, bins)[keep] / count[keep]) - (np.bincount(idx, res, bins)[keep] / count[keep]) ** 2
    w = np.sqrt(count[keep])
    if keep.sum() < 2:  # one intensity only: no slope to fit
        return NoiseModel("heteroscedastic", {"a": 0.0, "b": float(max(res.var(), 0.0))})
    (a, b), *_ = np.linalg.lstsq(np.stack([mean, np.ones_like(mean)], 1) * w[:, None], var * w, rcond=None)
    w2 = w**2
    if a < 0:  # constrained least squares: a = 0, then b minimises the same weighted error
        a, b = 0.0, float(max(np.sum(w2 * var) / np.sum(w2), 0.0))
    elif b < 0:  # b = 0: the line through the origin
        a, b = float(max(np.sum(w2 * mean * var) / max(np.sum(w2 * mean**2), 1e-12), 0.0)), 0.0
    return NoiseModel("heteroscedastic", {"a": float(a), "b": float(b)})


@dataclass(frozen=True)
class NoiseModel:
    """A callable noise model built from a noise config (``raytrain.config.NoiseConfig``), with its level.

    ``level(rng)`` draws the per-image level (sigma for blind AWGN) so that degrading is reproducible per image.
    """

    kind: str
    params: dict

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = self._noisy(img, rng)
        if self.params.get("quantize"):
            return quantize8(out).astype(np.float32)
        if self.params.get("clip"):
            return np.clip(out, 0, 1).astype(np.float32)
        return out

    def _noisy(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        p = self.params
        if self.kind == "awgn":
            sigma = p["sigma"]
            if isinstance(sigma, (tuple, list)):
                sigma = rng.uniform(sigma[0], sigma[1])
            return awgn(img, rng, float(sigma))
        if self.kind == "poisson":
            return poisson_skimage(img, rng) if p["peak"] is None else poisson_peak(img, rng, p["peak"])
        if self.kind == "poisson_gaussian":
            return poisson_gaussian(img, rng, p["peak"], p["sigma"])
        if self.kind == "camera":
            return camera(img, rng, p["shot"], p["read"], p["correlation"], p["gamma"])
        if self.kind == "heteroscedastic":
            return heteroscedastic(img, rng, p["a"], p["b"])
        raise ValueError(f"unknown noise kind {self.kind!r}")


def noise_model(cfg) -> NoiseModel:
    """Build a :class:`NoiseModel` from a validated noise config (any object with ``model_dump``)."""
    params = dict(cfg.model_dump())
    kind = params.pop("kind")
    if kind == "camera":
        preset = CAMERA_PRESETS[params.pop("preset")]
        params = {k: (preset[k] if params.get(k) is None else params[k]) for k in ("shot", "read", "correlation")} | {
            "gamma": params["gamma"]
        }
    return NoiseModel(kind, params)


def rng_for(seed: int, *keys: int) -> np.random.Generator:
    """A generator determined by ``seed`` and integer keys (image index, patch id, domain): order-independent."""
    return np.random.default_rng([seed, *keys])
