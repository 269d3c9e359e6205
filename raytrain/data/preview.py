"""``raytrain data preview``: a picture of the patches each domain feeds to training.

It cuts patches with the same function the Ray Data pipeline maps (``cut_patches``), so what you see is what the
workers get, without starting Ray.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from raytrain.data.collection import load_domains
from raytrain.data.pipeline import DOMAIN_CODES, cut_patches, resolve_augment, stream_domain, stream_noise
from raytrain.layout import hwc


def write_preview(cfg, out: Path, per_domain: int = 8) -> Path:
    import matplotlib
    import torch

    from raytrain.data.device_noise import generator
    from raytrain.train.draw import on_device

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from raytrain.files import atomic_write_bytes

    col = load_domains(cfg)
    d = cfg.data
    rows: list[tuple[str, np.ndarray]] = []
    augment = resolve_augment(d.patches.augment, col)[0]
    for name, dom in col.domains.items():
        if len(dom) == 0:
            continue
        got = cut_patches(np.arange(per_domain), stream_domain(cfg, name, dom), d.patches.size, augment, cfg.seed,
                          DOMAIN_CODES[name])  # fmt: skip
        # as a worker gets them: floats, with the noise it draws on its device (train/draw.py)
        noise = stream_noise(cfg, name)
        gen = generator(torch.device("cpu"), cfg.seed, 0, DOMAIN_CODES[name], 0) if noise is not None else None
        ready = on_device({k: torch.from_numpy(v) for k, v in got.items()}, noise, gen)
        for key, t in ready.items():
            rows.append((f"{name} ({len(dom)} img): {key}", t.numpy()))
    fig, axes = plt.subplots(len(rows), per_domain, figsize=(1.3 * per_domain, 1.45 * len(rows)), squeeze=False)
    for r, (label, arr) in enumerate(rows):
        for c in range(per_domain):
            ax = axes[r][c]
            img = np.clip(hwc(arr[c]), 0, 1)
            ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r][0].set_title(label, loc="left", fontsize=8)
    fig.suptitle(f"{cfg.name}: {d.patches.size}px patches, noise {d.noise.kind}, split {col.split.sizes()}", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(buf.getvalue(), out)
    return out
