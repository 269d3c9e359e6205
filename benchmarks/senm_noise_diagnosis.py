"""Where a SeNM-VAE checkpoint's synthetic noise gains or loses its spatial structure (issue 36): the second-order
statistics of each part of the synthesis, on real pairs of a camera, every pair at its own true level.

    python benchmarks/make_camera_pairs.py /tmp/cam --kernel iso --tap 2 --gain 0.008 --gamma 2.4 --seed 11
    raytrain train configs/senm_camera.yaml --set data.source=/tmp/cam/clean --set data.noisy_source=/tmp/cam/noisy
    python benchmarks/senm_noise_diagnosis.py runs/ray/senm-camera/checkpoint_... /tmp/cam [--images a,b] [--crop 128]

Rows (lag-1 / lag-2 correlation along rows and columns, std in units of the level):
  real noise                 (y - x) / level
  posterior explained        what the decoder reproduces from posterior z_n ~ q(z_n | y, z)
  decoded prior draws        what it makes of prior draws z_n ~ p(z_n | z) at the synthesis temperature
  likelihood draw            the fitted likelihood's stationary draw (likelihood: sample)
  synthesis, spectrum model  the whole synthetic noise before the spectrum's filter
  synthesis, spectrum matched  after it (the checkpoint's filter; fitted here on the pairs' 32 px patches when the
                             checkpoint has none)
and, per latent group, the lag-1 correlation of posterior z_n in the prior's units against the coloured prior's draws.
"""

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from raytrain import load_noise_model
from raytrain.methods.senm.nets import _colored, cross_spectrum, filter_field, match_kernel
from raytrain.metrics import noise_correlation


def load_pairs(root: Path, names: list[str] | None, crop: int) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for f in sorted((root / "clean").glob("*.png")):
        if names and f.stem not in names:
            continue
        a = np.asarray(Image.open(f)).astype(np.float32)
        b = np.asarray(Image.open(root / "noisy" / f.name)).astype(np.float32)
        top = 255.0 if a.max() <= 255 else 65535.0
        i, j = (a.shape[0] - crop) // 2, (a.shape[1] - crop) // 2
        if min(i, j) < 0:
            continue
        xs.append(a[i : i + crop, j : j + crop] / top)
        ys.append(b[i : i + crop, j : j + crop] / top)
    if not xs:
        raise SystemExit(f"{root}: no clean/noisy PNG pairs of at least {crop} px")
    return torch.tensor(np.stack(xs))[:, None], torch.tensor(np.stack(ys))[:, None]


def structure(n: torch.Tensor) -> list[float]:
    """Mean over images of lag-1 rows, lag-1 columns, lag-2 rows, lag-2 columns; and the mean std."""
    r = [noise_correlation(a[0].numpy()) for a in n]
    keys = ("rho_h", "rho_v", "rho_h2", "rho_v2")
    return [float(np.mean([d[k] for d in r])) for k in keys] + [float(n.std(dim=(1, 2, 3)).mean())]


def patches(t: torch.Tensor, p: int = 32) -> torch.Tensor:
    return t.unfold(2, p, p).unfold(3, p, p).permute(0, 2, 3, 1, 4, 5).reshape(-1, t.shape[1], p, p)


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("camera", type=Path, help="a folder with clean/ and noisy/ PNG pairs")
    ap.add_argument("--images", help="comma-separated image names (default: all)")
    ap.add_argument("--crop", type=int, default=128)
    a = ap.parse_args()
    torch.manual_seed(0)
    _, m = load_noise_model(a.checkpoint)
    vae, t = m.nets["vae"], m.temperature
    x, y = load_pairs(a.camera, a.images.split(",") if a.images else None, a.crop)
    level = (y - x).std(dim=(1, 2, 3), keepdim=True)
    noise, explained, fields = vae.posterior_fit(x, y)
    drawn, mean = vae.noise_part(x, level, t)
    rows = {
        "real noise": noise,
        "posterior explained": explained,
        f"decoded prior draws (T {t:.2f})": (drawn - mean) / level,
        "likelihood draw": vae.likelihood_noise(x.shape, level) / level,
        "synthesis, spectrum model": (m.synthesize(x, level, matched=False, amplitude=False) - x) / level,
    }
    if not hasattr(vae, "noise_filter"):  # fitted here, as fit_spectrum does on training patches
        xp, yp = patches(x), patches(y)
        lp = (yp - xp).std(dim=(1, 2, 3), keepdim=True).clamp(min=1e-6)
        s_syn = cross_spectrum((m.synthesize(xp, lp, matched=False, amplitude=False) - xp) / lp)
        vae.register_buffer("noise_filter", match_kernel(cross_spectrum((yp - xp) / lp), s_syn, m.m.color_size))
    rows["synthesis, spectrum matched"] = filter_field(rows["synthesis, spectrum model"], vae.noise_filter)
    print(f"{len(x)} pairs ({a.crop} px crops), temperature {t:.3f}")
    print(f"{'':34s} lag1 rows  lag1 cols  lag2 rows  lag2 cols   std")
    for name, n in rows.items():
        print(f"{name:34s} " + "  ".join(f"{v:9.3f}" for v in structure(n)))
    print(f"posterior explained vs real noise: correlation {float((explained * noise).mean() / explained.std()):.3f}")
    for g, e in enumerate(fields):
        d = _colored(e.shape, vae.zn_color[g], None, e)
        lag = lambda z: [float(np.mean([noise_correlation(z[i, c].numpy())[k] for i in range(z.shape[0])  # noqa: E731
                                        for c in range(z.shape[1])])) for k in ("rho_h", "rho_v")]  # fmt: skip
        print(f"group {g}: posterior z_n (prior units) lag1 {lag(e)[0]:.3f} / {lag(e)[1]:.3f} std {e.std():.3f} | "
              f"coloured prior draws {lag(d)[0]:.3f} / {lag(d)[1]:.3f} std {d.std():.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
