"""Write real-looking pairs from a camera whose noise is none of raytrain's presets: Poisson-Gaussian in linear light
(gamma 2.4), correlated horizontally only (a [1, 2, 1] row filter, as a line-interpolating demosaic leaves), per-row
banding, 8 bit. The bundled gray images, at most 256 px, become OUT/clean/NAME.png and OUT/noisy/NAME.png.

    python benchmarks/make_camera_pairs.py OUT
    python benchmarks/make_camera_pairs.py OUT --axis 0 --gain 0.004 --seed 7   # another camera (tuning, not checking)
    raytrain pipeline configs/senm_pipeline.yaml --set data.source=OUT/clean --set data.noisy_source=OUT/noisy
"""

import argparse
from pathlib import Path

import numpy as np
from PIL import Image as PIL
from scipy.ndimage import convolve1d

from raytrain.data.images import load_samples, shrink


def main(out: Path, axis: int = 1, gain: float = 0.006, seed: int = 2026) -> None:
    (out / "clean").mkdir(parents=True)
    (out / "noisy").mkdir()
    rng = np.random.default_rng(seed)
    for im in load_samples("gray"):
        c = np.round(shrink(im.pixels, 256)[..., 0] * 255) / 255
        lin = c.astype(np.float64) ** 2.4
        std = np.sqrt(gain * lin + 2e-5)
        field = convolve1d(rng.standard_normal(c.shape), np.array([1, 2, 1]) / np.sqrt(6), axis=axis)
        band = rng.standard_normal((c.shape[0], 1)) * 0.002
        noisy = np.clip(lin + std * field + band, 0, 1) ** (1 / 2.4)
        for folder, a in (("clean", c), ("noisy", noisy)):
            PIL.fromarray(np.round(a * 255).astype(np.uint8)).save(out / folder / f"{im.name}.png")
        print(f"{im.name}: {c.shape[1]}x{c.shape[0]}, noise std {(np.round(noisy * 255) - c * 255).std():.2f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="a new folder: OUT/clean, OUT/noisy")
    ap.add_argument("--axis", type=int, choices=(0, 1), default=1,
                    help="the correlation's axis: 1 rows (default), 0 columns")  # fmt: skip
    ap.add_argument("--gain", type=float, default=0.006, help="the Poisson part's variance per unit of linear light")
    ap.add_argument("--seed", type=int, default=2026)
    a = ap.parse_args()
    main(a.out, a.axis, a.gain, a.seed)
