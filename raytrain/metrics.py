"""Image-quality and noise-quality metrics. Pure torch/numpy: no Ray, no MLflow.

- :func:`psnr`, :func:`ssim`: torch, batched, explicit ``data_range``; SSIM matches
  ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``
  with per-channel averaging for RGB.
- :func:`kld_noise_residual`: KL between histograms of noise residuals (noisy - clean), as in Noise Flow / DANet.
- :func:`kld_noisy_histogram`: KL(generated || real) between grayscale uint8 histograms of the *noisy images*,
  as in the SeNM-VAE official ``compute_kl.py``.
- :func:`noise_correlation`: autocorrelation of the noise along rows and columns at lags 1 and 2, which both KLDs
  are blind to.
- :func:`frechet_distance`: FID between two feature sets (the features come from ``raytrain.nn.inception``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from raytrain.nn.ops import gaussian_1d


def psnr(x: torch.Tensor, ref: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """PSNR in dB per image of a (N, C, H, W) batch."""
    mse = ((x.double() - ref.double()) ** 2).flatten(1).mean(1)
    return 10.0 * torch.log10(data_range**2 / mse.clamp_min(1e-20))


def _gauss_window(sigma: float = 1.5, truncate: float = 3.5) -> torch.Tensor:
    """scikit-image's SSIM window: radius int(truncate * sigma + 0.5)."""
    return gaussian_1d(2 * int(truncate * sigma + 0.5) + 1, sigma)


def ssim(x: torch.Tensor, ref: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """SSIM per image of a (N, C, H, W) batch (Gaussian window sigma 1.5, K1 = 0.01, K2 = 0.03), channels averaged.

    'Valid' convolutions exclude the border within the window radius from the mean, as scikit-image does.
    """
    x, ref = x.double(), ref.double()
    c = x.shape[1]
    g = _gauss_window().to(x.device)
    wx = g.view(1, 1, 1, -1).repeat(c, 1, 1, 1)
    wy = g.view(1, 1, -1, 1).repeat(c, 1, 1, 1)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(t, wx, groups=c), wy, groups=c)

    mu_x, mu_y = blur(x), blur(ref)
    sxx = blur(x * x) - mu_x**2
    syy = blur(ref * ref) - mu_y**2
    sxy = blur(x * ref) - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return s.flatten(1).mean(1)


# ------------------------------------------------------------------------------------------------ noise quality
def kld_noise_residual(real_noise: np.ndarray, gen_noise: np.ndarray) -> float:
    """Forward KL(real || generated) between histograms of noise residuals on the [0, 1] scale.

    Bins: 64 over [-0.1, 0.1] plus one overflow bin each side (Noise Flow / DANet); bins empty in either are skipped.
    """
    bw = 0.2 / 64
    edges = np.concatenate(([-1000.0], np.arange(-0.1, 0.1 + 1e-9, bw), [1000.0]))
    p = np.histogram(np.asarray(real_noise, np.float64).ravel(), edges)[0] / np.size(real_noise)
    q = np.histogram(np.asarray(gen_noise, np.float64).ravel(), edges)[0] / np.size(gen_noise)
    keep = (p > 0) & (q > 0)
    p, q = p[keep], q[keep]
    return float(np.sum(p * (np.log(p) - np.log(q))))


def to_gray_uint8(img: np.ndarray) -> np.ndarray:
    """[0, 1] float (H, W[, C]) -> grayscale uint8, ITU-R 601 luma as the official script's reader does."""
    a = np.asarray(img, np.float64)
    if a.ndim == 3 and a.shape[-1] == 3:
        a = a @ np.array([0.299, 0.587, 0.114])
    elif a.ndim == 3:
        a = a[..., 0]
    return np.clip(np.round(a * 255.0), 0, 255).astype(np.uint8)


def kld_noisy_histogram(generated_noisy: np.ndarray, real_noisy: np.ndarray) -> float:
    """KL(generated || real) between 256-bin histograms of grayscale uint8 noisy images (SeNM-VAE ``compute_kl``).

    The real histogram gets +1e-8 per bin before renormalising, as the official script does.
    """
    h1 = np.histogram(to_gray_uint8(generated_noisy).ravel(), bins=256, range=(0, 255))[0].astype(np.float64)
    h2 = np.histogram(to_gray_uint8(real_noisy).ravel(), bins=256, range=(0, 255))[0].astype(np.float64)
    p = h1 / h1.sum()
    q = h2 / h2.sum() + 1e-8
    q /= q.sum()
    nz = p > 0
    return float(np.sum(p[nz] * np.log(p[nz] / q[nz])))


AKLD_WINDOW = 7  # DANet's estimate_sigma_gauss: a 7 x 7 Gaussian of OpenCV's default sigma for that size


def local_variance(noise: np.ndarray, size: int = AKLD_WINDOW) -> np.ndarray:
    """Per-pixel noise variance of an (H, W, C) noise image: its square blurred by a ``size`` x ``size`` Gaussian
    (sigma = OpenCV's default 0.3 ((size - 1) / 2 - 1) + 0.8), reflect padding, channel by channel (DANet)."""
    from scipy.ndimage import correlate1d

    k = gaussian_1d(size, 0.3 * ((size - 1) / 2 - 1) + 0.8).numpy()
    out = np.asarray(noise, np.float64) ** 2
    for axis in (0, 1):  # scipy's mirror = torch's reflect padding (the edge pixel not repeated)
        out = correlate1d(out, k, axis=axis, mode="mirror")
    return np.maximum(out, 1e-10)


def akld(real_noisy: np.ndarray, gen_noisy: np.ndarray, clean: np.ndarray) -> float:
    """DANet's AKLD term of one image: the mean over pixels and channels of KL(N(0, v_gen) || N(0, v_real)) with v the
    local noise variances (:func:`local_variance`) and their ratio clamped to [0.1, 10] (DANet's
    ``kl_gauss_zero_center``); AKLD is its mean over images. HWC images on the same scale ([0, 1])."""
    ratio = np.clip(local_variance(np.asarray(gen_noisy, np.float64) - clean)
                    / local_variance(np.asarray(real_noisy, np.float64) - clean), 0.1, 10)  # fmt: skip
    return float(0.5 * np.mean(np.log(1 / ratio) + ratio - 1))


def noise_correlation(noise: np.ndarray) -> dict[str, float]:
    """Normalised autocorrelation of a noise image (H, W[, C]) along its rows (``rho_h``: horizontal neighbours)
    and its columns (``rho_v``) at lag 1, and at lag 2 (``rho_h2``, ``rho_v2``).

    ~0 for white noise; demosaiced camera noise is positively correlated, often more along one axis (the sensor's
    readout), and a wide kernel keeps it above 0 at lag 2. The residual-histogram KLD cannot see any of this.
    """
    n = np.asarray(noise, np.float64)
    n = n - n.mean()
    var = float((n * n).mean())
    keys = ("rho_h", "rho_v", "rho_h2", "rho_v2")
    if var == 0.0:
        return dict.fromkeys(keys, 0.0)
    return {
        "rho_h": float((n[:, 1:] * n[:, :-1]).mean() / var),
        "rho_v": float((n[1:] * n[:-1]).mean() / var),
        "rho_h2": float((n[:, 2:] * n[:, :-2]).mean() / var),
        "rho_v2": float((n[2:] * n[:-2]).mean() / var),
    }


STRUCTURE = ("rho_h", "rho_v", "rho_h2", "rho_v2")  # noise_correlation's keys: the noise's spatial structure
PROFILE = ("noise_std_dark", "noise_std_bright")  # the keys of intensity_profile


def intensity_profile(noise: np.ndarray, clean: np.ndarray) -> dict[str, float]:
    """The std (0..255) of ``noise`` over the darkest and over the brightest quarter of ``clean``'s values (HWC
    arrays of one shape): ``noise_std_dark``, ``noise_std_bright``."""
    c, n = np.asarray(clean, np.float64).ravel(), np.asarray(noise, np.float64).ravel()
    lo, hi = np.quantile(c, [0.25, 0.75])
    dark, bright = n[c <= lo], n[c >= hi]
    return {"noise_std_dark": float(dark.std() * 255), "noise_std_bright": float(bright.std() * 255)}


def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray, eps: float = 1e-6) -> float:
    """Fréchet distance between Gaussians fitted to two (N, D) feature sets: ||mu_a - mu_b||^2 +
    Tr(S_a + S_b - 2 (S_a S_b)^(1/2)). As pytorch-fid: a singular product gets ``eps`` on both diagonals and the
    square root's tiny imaginary part is dropped. Fewer samples than dimensions make the covariances rank-deficient
    (computed exactly through an SVD then): the value is only comparable between models scored on the same samples."""
    from scipy import linalg

    a, b = np.asarray(feats_a, np.float64), np.asarray(feats_b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"frechet_distance needs two (N >= 2, D) feature sets of one D, got {a.shape} and {b.shape}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    d = mu_a - mu_b
    if min(len(a), len(b)) <= a.shape[1]:
        # Fewer samples than features: with centred X_a, X_b, the non-zero eigenvalues of S_a S_b are the squared
        # singular values of X_a X_b^T / sqrt((n_a - 1)(n_b - 1)), so Tr((S_a S_b)^(1/2)) is its nuclear norm:
        # exact, and an (n_a x n_b) SVD instead of a (D x D) matrix square root.
        xa, xb = a - mu_a, b - mu_b
        scale = np.sqrt((len(a) - 1) * (len(b) - 1))
        tr_covmean = float(np.linalg.svd(xa @ xb.T, compute_uv=False).sum() / scale)
        tr_a, tr_b = float((xa * xa).sum() / (len(a) - 1)), float((xb * xb).sum() / (len(b) - 1))
        return float(max(d @ d + tr_a + tr_b - 2 * tr_covmean, 0.0))
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s_a @ s_b)
    if not np.isfinite(covmean).all():
        off = np.eye(len(s_a)) * eps
        covmean = linalg.sqrtm((s_a + off) @ (s_b + off))
    covmean = np.real(covmean)
    return float(max(d @ d + np.trace(s_a) + np.trace(s_b) - 2 * np.trace(covmean), 0.0))


def mean_std(values: list[float] | np.ndarray) -> tuple[float, float]:
    """Mean and population std (0 for a single value); NaN for an empty list."""
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        return math.nan, math.nan
    return float(a.mean()), float(a.std())


def format_mean_std(values: list[float] | np.ndarray, digits: int = 2) -> str:
    m, s = mean_std(values)
    return f"{m:.{digits}f} ± {s:.{digits}f}"
