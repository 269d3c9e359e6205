"""Classical denoisers scored beside the learned ones on the very same validation pairs: total variation
(scikit-image, its weight the best of a small grid on those pairs: an oracle pick that favours TV), non-local means
(scikit-image) and BM3D (the ``bm3d`` package, when installed). NLM and BM3D get the noise's sigma when the config
names one fixed AWGN sigma, else scikit-image's per-image estimate (``estimate_sigma``): the learned methods are
blind there too. Pure numpy/torch: no Ray, no MLflow.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from raytrain.evaluate import evaluate_pairs
from raytrain.layout import to_image, to_tensor

TV_WEIGHTS = (0.04, 0.08, 0.12, 0.16)


def known_sigma(noise_cfg) -> float | None:
    """The noise std on the 0..1 scale when the config fixes it (AWGN with one sigma), else None."""
    sigma = getattr(noise_cfg, "sigma", None)
    if getattr(noise_cfg, "kind", None) == "awgn" and isinstance(sigma, (int, float)):
        return float(sigma) / 255
    return None


def _per_image(fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[torch.Tensor], torch.Tensor]:
    """A (H, W, C) numpy denoiser as a restorer of (1, C, H, W) tensors."""

    def run(t: torch.Tensor) -> torch.Tensor:
        img = np.clip(to_image(t), 0, 1).astype(np.float64)
        return to_tensor(fn(img).reshape(img.shape), t.device)

    return run


def classical_rows(pairs: list, sigma: float | None, scale: int = 1) -> dict[str, list[dict[str, float]]]:
    """Per-image ``evaluate_pairs`` rows (psnr, ssim, ...) of each baseline on (clean, noisy) HWC pairs, keyed
    by its label: the noisy input, TV (oracle weight), NLM, BM3D (if ``bm3d`` is installed). Super-resolution pairs
    (``scale`` > 1, (HR, LR)): the bicubic up-sampling of the LR input only."""
    from skimage.restoration import denoise_nl_means, denoise_tv_chambolle, estimate_sigma

    if scale > 1:
        from raytrain.data.resize import bicubic_up

        return {"bicubic": evaluate_pairs(lambda t: bicubic_up(t, (t.shape[-2] * scale, t.shape[-1] * scale)), pairs)}

    def s_of(img: np.ndarray) -> float:
        return sigma if sigma is not None else float(np.mean(estimate_sigma(img, channel_axis=-1)))

    how = "known sigma" if sigma is not None else "estimated sigma"
    out = {"noisy input": [r | {"psnr": r["psnr_noisy"], "ssim": r["ssim_noisy"]}
                           for r in evaluate_pairs(lambda t: t, pairs)]}  # fmt: skip
    tv = {w: evaluate_pairs(_per_image(lambda a, w=w: denoise_tv_chambolle(a, weight=w, channel_axis=-1)), pairs)
          for w in TV_WEIGHTS}  # fmt: skip
    best = max(tv, key=lambda w: np.mean([r["psnr"] for r in tv[w]]))
    out["TV (oracle weight)"] = [r | {"weight": best} for r in tv[best]]  # the label stays the same across seeds

    def nlm(a: np.ndarray) -> np.ndarray:
        s = s_of(a)
        return denoise_nl_means(a, h=0.8 * s, sigma=s, fast_mode=True, patch_size=5, patch_distance=6, channel_axis=-1)

    out[f"NLM ({how})"] = evaluate_pairs(_per_image(nlm), pairs)
    try:
        import bm3d
    except ImportError:
        return out

    def bm3d_any(a: np.ndarray) -> np.ndarray:  # gray: the 2-D call; RGB: BM3D's colour version (YCbCr)
        if a.shape[-1] == 1:
            return bm3d.bm3d(a[..., 0], sigma_psd=s_of(a))
        return bm3d.bm3d_rgb(a, sigma_psd=s_of(a))

    out[f"BM3D ({how})"] = evaluate_pairs(_per_image(bm3d_any), pairs)
    return out
