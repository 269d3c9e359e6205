"""Write real-looking pairs from a camera whose noise is none of raytrain's presets: Poisson-Gaussian in linear light,
spatially correlated by a kernel (none, along one axis, isotropic, wide), a tone curve, optional per-row banding,
8 or 16 bit. The bundled gray images, at most 256 px, become OUT/clean/NAME.png and OUT/noisy/NAME.png.

    python benchmarks/make_camera_pairs.py OUT                                   # the first checking camera (issue 12)
    python benchmarks/make_camera_pairs.py OUT --kernel iso --tap 2 --gain 0.004 --seed 7   # a tuning camera
    python benchmarks/make_camera_pairs.py OUT --camera check-iso                # a named checking camera
    raytrain pipeline configs/senm_pipeline.yaml --set data.source=OUT/clean --set data.noisy_source=OUT/noisy

Kernels (the noise field is white Gaussian noise filtered, then scaled to unit variance): ``none``; ``rows`` /
``cols``: ``[1, TAP, 1]`` along one axis (lag-1 correlation 2 TAP / (TAP^2 + 2) before the tone curve: 0.67 at
TAP 2, 0.71 at its maximum TAP 1.41); ``iso``: that kernel along both axes; ``wide``: a 7-tap Gaussian of std
``--width`` along both axes (lag 1 / 2 / 3: exp(-k^2 / (4 width^2)), 0.78 / 0.37 / 0.11 at width 1). The tone curve
and the quantisation lower what a pair shows (the measured figures print per image).

CHECK cameras (``--camera``) are kept out of every choice made on SeNM-VAE's model and recipe: they are scored, not
tuned on. Tune on any other settings (other seeds, taps, gains, tone curves).
"""

import argparse
from pathlib import Path

import numpy as np
from PIL import Image as PIL
from scipy.ndimage import convolve1d

from raytrain.data.images import load_samples, shrink
from raytrain.metrics import noise_correlation

CHECK = {  # name: settings; never used to choose anything (issue 36)
    "check-white": {"kernel": "none", "gain": 0.008, "gamma": 2.2, "bits": 8, "banding": 0.0, "seed": 9101},
    "check-cols": {"kernel": "cols", "tap": 3.0, "gain": 0.005, "gamma": 2.4, "bits": 16, "banding": 0.0, "seed": 9102},
    "check-iso": {"kernel": "iso", "tap": 1.5, "gain": 0.01, "gamma": 2.2, "bits": 8, "banding": 0.0, "seed": 9103},
    "check-wide": {"kernel": "wide", "width": 1.0, "gain": 0.006, "gamma": 2.4, "bits": 8, "banding": 0.002,
                   "seed": 9104},
}  # fmt: skip


def field(shape, rng, kernel: str, tap: float, width: float) -> np.ndarray:
    """Unit-variance Gaussian noise with the kernel's spatial correlation."""
    f = rng.standard_normal(shape)
    if kernel == "none":
        return f
    if kernel == "wide":
        k = np.exp(-(np.arange(-3, 4) ** 2) / (2 * width**2))
        axes = (0, 1)
    else:
        k = np.array([1.0, tap, 1.0])
        axes = {"rows": (1,), "cols": (0,), "iso": (0, 1)}[kernel]
    k = k / np.sqrt((k**2).sum())
    for ax in axes:
        f = convolve1d(f, k, axis=ax)
    return f


def main(out: Path, kernel: str = "rows", tap: float = 2.0, width: float = 1.0, gain: float = 0.006,
         gamma: float = 2.4, bits: int = 8, banding: float = 0.002, seed: int = 2026) -> None:  # fmt: skip
    (out / "clean").mkdir(parents=True)
    (out / "noisy").mkdir()
    rng = np.random.default_rng(seed)
    top = 2**bits - 1
    for im in load_samples("gray"):
        c = np.round(shrink(im.pixels, 256)[..., 0] * top) / top
        lin = c.astype(np.float64) ** gamma
        std = np.sqrt(gain * lin + 2e-5)
        noise = std * field(c.shape, rng, kernel, tap, width)  # drawn before the banding: the first camera's order
        band = rng.standard_normal((c.shape[0], 1)) * banding
        noisy = np.clip(lin + noise + band, 0, 1) ** (1 / gamma)
        noisy = np.round(noisy * top) / top
        dtype = np.uint8 if bits == 8 else np.uint16
        for folder, a in (("clean", c), ("noisy", noisy)):
            PIL.fromarray(np.round(a * top).astype(dtype)).save(out / folder / f"{im.name}.png")
        rho = noise_correlation((noisy - c)[..., None])
        print(f"{im.name}: {c.shape[1]}x{c.shape[0]}, noise std {((noisy - c) * 255).std():.2f} (0..255), corr. rows / "
              f"cols {rho['rho_h']:.2f} / {rho['rho_v']:.2f} at lag 1, {rho['rho_h2']:.2f} / {rho['rho_v2']:.2f} at "
              "lag 2")  # fmt: skip


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="a new folder: OUT/clean, OUT/noisy")
    ap.add_argument("--camera", choices=sorted(CHECK), help="a named checking camera (its settings; nothing else)")
    ap.add_argument("--kernel", choices=("none", "rows", "cols", "iso", "wide"), default="rows",
                    help="the noise's spatial correlation (default rows: the first checking camera)")  # fmt: skip
    ap.add_argument("--axis", type=int, choices=(0, 1), help="old spelling: 1 = --kernel rows, 0 = --kernel cols")
    ap.add_argument("--tap", type=float, default=2.0, help="the centre tap of the [1, TAP, 1] kernel")
    ap.add_argument("--width", type=float, default=1.0, help="the wide kernel's std (pixels)")
    ap.add_argument("--gain", type=float, default=0.006, help="the Poisson part's variance per unit of linear light")
    ap.add_argument("--gamma", type=float, default=2.4, help="the tone curve: linear light ** (1 / GAMMA)")
    ap.add_argument("--bits", type=int, choices=(8, 16), default=8, help="the files' bit depth")
    ap.add_argument("--banding", type=float, default=0.002, help="std of a per-row offset in linear light")
    ap.add_argument("--seed", type=int, default=2026)
    a = ap.parse_args()
    if a.camera:
        main(a.out, **{"tap": 2.0, "width": 1.0} | CHECK[a.camera])
    else:
        kernel = {None: a.kernel, 1: "rows", 0: "cols"}[a.axis]
        main(a.out, kernel, a.tap, a.width, a.gain, a.gamma, a.bits, a.banding, a.seed)
