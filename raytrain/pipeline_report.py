"""What ``raytrain pipeline`` shows: the table of every arm (``table.md``, ``table.csv``, ``runs.json``, logged to
the MLflow runs) and its pictures (``noise_samples.png``: each noise model's synthetic images beside the real
ones, and their residuals, where spatial correlation shows; ``denoise_samples.png``: noisy | each arm's output |
clean with each image's PSNR; ``sr_samples.png``: each arm's super-resolved images beside the LR input and the HR
image)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from raytrain.config import RunConfig
from raytrain.data.collection import centre_crop
from raytrain.layout import to_image, to_tensor
from raytrain.tables import markdown_table

PICTURE_ROWS = 4  # held-out images shown in sr_samples.png

if TYPE_CHECKING:
    from raytrain.noise_pipeline import PipelineResult
    from raytrain.tracking import Run

NOISE_COLUMNS = [("kld", "KLD (residual)"), ("kld_noisy", "KLD (noisy image)"), ("akld", "AKLD"),
                 ("rho_h rho_v", "noise corr. rows / cols, lag 1"), ("rho_h2 rho_v2", "lag 2"),
                 ("noise_std", "noise std"), ("noise_std_dark noise_std_bright", "std dark / bright")]  # fmt: skip
SHORT = {
    "senm": "SeNM-VAE",
    "gaussian": "Gaussian",
    "heteroscedastic": "heteroscedastic",
    "bicubic": "bicubic",
    "real_pairs": "real pairs only",
    "all_real": "all real pairs",
}
LABELS = {"senm": "SeNM-VAE synthetic + real pairs", "gaussian": "Gaussian (paired std) + real pairs",
          "heteroscedastic": "heteroscedastic (fitted) + real pairs", "real_pairs": "real pairs only",
          "all_real": "all real pairs (upper bound)", "bicubic": "bicubic-only synthetic + real pairs"}  # fmt: skip


def plot_noise_samples(pairs, samples: dict[str, list[np.ndarray]], path: Path, crop: int = 96) -> Path | None:
    """A picture of the noise: per held-out image (rows), the clean crop, the real noisy one and each noise model's
    synthetic one at the real noise level, then the residuals (noisy - clean) of the real and of each synthetic
    image, where spatial correlation shows as grain larger than a pixel (columns); the same centre crop everywhere.
    Residuals are drawn on one scale per row: mid-gray 0, black / white -/+3 std of the real noise."""
    if not samples or not pairs:
        return None
    return save_grid(noise_columns(pairs, samples), path, crop, 2.2)


def noise_columns(pairs, samples: dict[str, list[np.ndarray]]) -> list[tuple]:
    """The columns of :func:`plot_noise_samples`: (title, images)."""
    cols = [("clean", [clean for clean, _ in pairs]), ("real noisy", [noisy for _, noisy in pairs])]
    cols += [(f"{SHORT.get(arm, arm)} (synthetic)", imgs) for arm, imgs in samples.items()]
    scale = [3 * max(float(np.std(noisy - clean)), 1e-6) for clean, noisy in pairs]

    def shown(res: np.ndarray, i: int) -> np.ndarray:
        return np.clip(0.5 + res / (2 * scale[i]), 0, 1)

    cols.append(("real residual", [shown(noisy - clean, i) for i, (clean, noisy) in enumerate(pairs)]))
    cols += [(f"{SHORT.get(arm, arm)} residual", [shown(img - pairs[i][0], i) for i, img in enumerate(imgs)])
             for arm, imgs in samples.items()]  # fmt: skip
    return cols


def plot_denoise_samples(pairs, outputs: dict[str, list[np.ndarray]], path: Path, crop: int = 96) -> Path | None:
    """A picture of denoising: per held-out image (rows), the noisy input, each arm's output and the clean image over
    the same centre crop (columns), each with its PSNR on the whole image."""
    if not outputs or not pairs:
        return None
    return save_grid(denoise_columns(pairs, outputs), path, crop, 2.4)


def denoise_columns(pairs, outputs: dict[str, list[np.ndarray]]) -> list[tuple]:
    """The columns of :func:`plot_denoise_samples`: (title, images, PSNR labels or None)."""
    from raytrain.metrics import psnr

    n = min(len(pairs), *(len(v) for v in outputs.values()))
    pairs = pairs[:n]

    def db(img: np.ndarray, clean: np.ndarray) -> str:
        return f"{float(psnr(to_tensor(np.clip(img, 0, 1)), to_tensor(clean))):.2f} dB"

    cols = [("noisy input", [noisy for _, noisy in pairs], [db(noisy, clean) for clean, noisy in pairs])]
    cols += [(SHORT.get(arm, LABELS.get(arm, arm)), imgs[:n], [db(im, pairs[i][0]) for i, im in enumerate(imgs[:n])])
             for arm, imgs in outputs.items()]  # fmt: skip
    cols.append(("clean", [clean for clean, _ in pairs], None))
    return cols


def save_grid(cols: list[tuple], path: Path, crop: int, inches: float) -> Path:
    """A grid of images: one column per (title, images[, a label per image or None]), the same centre crop of each
    image, gray or RGB; a label is written in the image's corner."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = len(cols[0][1])
    fig, axes = plt.subplots(rows, len(cols), figsize=(inches * len(cols), inches * rows), squeeze=False)
    for j, col in enumerate(cols):
        title, imgs = col[0], col[1]
        labels = col[2] if len(col) > 2 else None
        for i, img in enumerate(imgs):
            ax = axes[i][j]
            tile = np.clip(centre_crop(img, crop), 0, 1)
            ax.imshow(tile[..., 0] if tile.shape[-1] == 1 else tile, cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            if labels:
                ax.text(0.02, 0.02, labels[i], transform=ax.transAxes, fontsize=8, color="yellow", va="bottom",
                        bbox={"facecolor": "black", "alpha": 0.6, "pad": 1, "lw": 0})  # fmt: skip
            if i == 0:
                ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_sr_samples(pairs, outputs: dict[str, list[np.ndarray]], path: Path, scale: int, crop: int = 48
                    ) -> Path | None:  # fmt: skip
    """A picture of super-resolution: per held-out image (rows), the LR input's centre crop bicubic-upscaled, each
    arm's SR output and the HR image over the same region (columns)."""
    if not outputs or not pairs:
        return None
    from raytrain.data.resize import bicubic_up

    def up(lr: np.ndarray) -> np.ndarray:
        return to_image(bicubic_up(to_tensor(lr), (lr.shape[0] * scale, lr.shape[1] * scale)))

    cols = [(f"LR input (bicubic x{scale})", [up(lr) for _, lr in pairs])]
    cols += [(SHORT.get(arm, LABELS.get(arm, arm)), imgs) for arm, imgs in outputs.items()]
    cols.append(("HR", [hr for hr, _ in pairs]))
    return save_grid(cols, path, crop * scale, 2.4)


def markdown(result: PipelineResult, cfg: RunConfig) -> str:
    down = cfg.pipeline.downstream.method.name
    has_lpips = all("lpips" in r for r in result.rows.values())
    head = ["training data", *(h for _, h in NOISE_COLUMNS), f"{down} PSNR (dB)", f"{down} SSIM"]
    head += [f"{down} LPIPS"] if has_lpips else []
    rows = []
    for arm, r in result.rows.items():
        noise = [f"{r[k]:.4f}" if k in r else "–" for k, _ in NOISE_COLUMNS[:3]]
        noise += [pair_cell(r, *k.split()) for k, _ in NOISE_COLUMNS[3:5]]
        noise.append(f"{r['noise_std']:.2f}" if "noise_std" in r else "–")
        noise.append(pair_cell(r, "noise_std_dark", "noise_std_bright", 1))
        cells = [LABELS[arm], *noise, f"{r['psnr']:.2f} ± {r['psnr_std']:.2f}", f"{r['ssim']:.4f}"]
        rows.append(cells + ([f"{r['lpips']:.4f}"] if has_lpips else []))
    lines = markdown_table(head, rows)
    any_row = next(iter(result.rows.values()))
    real_row = next((r for r in result.rows.values() if "rho_h_real" in r), None)
    real = "–" if real_row is None else (f"rows / cols {pair_cell(real_row, 'rho_h_real', 'rho_v_real')} at lag 1, "
                                         f"{pair_cell(real_row, 'rho_h2_real', 'rho_v2_real')} at lag 2")  # fmt: skip
    if real_row is not None and "noise_std_dark_real" in real_row:
        real += f"; its std dark / bright {pair_cell(real_row, 'noise_std_dark_real', 'noise_std_bright_real', 1)}"
    first = f"Noisy input: {any_row['psnr_noisy']:.2f} dB. "
    if cfg.data.scale > 1:
        cut = f", LPIPS {any_row['lpips_noisy']:.4f}" if has_lpips else ""
        first = (f"Super-resolution x{cfg.data.scale}, scored on the held-out (HR, LR) pairs: the LR input bicubic-"
                 f"upscaled scores {any_row['psnr_noisy']:.2f} dB, SSIM {any_row['ssim_noisy']:.4f}{cut}. The noise "
                 "columns compare each noise model's LR images with the real LR ones, on B(HR). ")  # fmt: skip
    lines.append(
        f"\n{first}Real noise correlation {real}. KLD (residual): histograms"
        " of noisy - clean, KL(real || synthetic); KLD (noisy image): the official SeNM-VAE script's uint8 noisy-image"
        " histograms, KL(synthetic || real); AKLD: DANet's average KL of the local noise variances (7 x 7 Gaussian"
        " window); std dark / bright: the noise's std over the darkest / brightest quarter of each clean image's"
        " pixels. All at each real pair's own noise level."
    )
    return "\n".join(lines)


def pair_cell(r: dict, a: str, b: str, digits: int = 2) -> str:
    """Two of a row's values as one cell (``0.52 / 0.51``), or a dash where the row has neither."""
    return f"{r[a]:.{digits}f} / {r[b]:.{digits}f}" if a in r and b in r else "–"


def write_tables(result: PipelineResult, cfg: RunConfig, runs: list[Run]) -> None:
    """table.md, table.csv and runs.json in the output folder, logged (with per-arm metrics) to each run."""
    md = markdown(result, cfg)
    (result.out / "table.md").write_text(md + "\n")
    buf = io.StringIO()
    keys = sorted({k for r in result.rows.values() for k in r})
    w = csv.writer(buf)
    w.writerow(["arm", *keys])
    for arm, r in result.rows.items():
        w.writerow([arm, *(r.get(k, "") for k in keys)])
    (result.out / "table.csv").write_text(buf.getvalue())
    (result.out / "runs.json").write_text(json.dumps({"parent": result.parent_run_id, **result.runs}, indent=2))
    keys = ("psnr", "ssim", "lpips", "kld", "kld_noisy", "akld", "rho", "rho_h", "rho_v", "rho_h2", "rho_v2")
    metrics = {f"{arm}_{k}": r[k] for arm, r in result.rows.items() for k in keys if k in r}
    for run in runs:
        for f in ("table.md", "table.csv", "runs.json", "noise_samples.png", "sr_samples.png", "denoise_samples.png"):
            if (result.out / f).is_file():
                run.log_artifact(result.out / f)
        run.log_metrics(metrics)
