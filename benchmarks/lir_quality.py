"""LIR quality after a fixed CPU budget, beside scikit-image's TV and non-local-means denoisers, plus the paper's
Table 4 ablation variants, in one run.

Each variant trains on the Ray Train loop (2 workers, unpaired halves of the sample photographs, gray, AWGN sigma 25)
for ``--minutes`` of wall time (``train.max_minutes``), then every method is scored on the same held-out noisy/clean
images. TV's weight is the best of a small grid on those images (an oracle choice, favouring TV); NLM and BM3D
(the ``bm3d`` package, ``pip install -e .[bench]``) use the known sigma. Prints a Markdown table (PSNR / SSIM mean ±
std over the held-out images; with ``--seeds`` the LIR rows give the mean ± std over the seeds of each run's mean:
the split and the held-out images stay those of seed 0, the seed varies the nets' init and the patches).

    python benchmarks/lir_quality.py --minutes 5 --variants full,no_noise_encoder,no_repr_disc,no_bcm
    python benchmarks/lir_quality.py --minutes 3 --seeds 0,1,2   # Table 4 at the CPU budget, 3 seeds each
"""

from __future__ import annotations

from raytrain import localray

localray.prefer_loopback()  # before Ray is imported: this benchmark's local Ray listens on 127.0.0.1 only

import argparse
import os
import tempfile

import numpy as np
import ray
import torch

from raytrain.baselines import classical_rows
from raytrain.config import load_config
from raytrain.data.collection import load_domains
from raytrain.evaluate import evaluate_pairs
from raytrain.methods import build_method
from raytrain.metrics import format_mean_std
from raytrain.train.checkpoint import load_inference
from raytrain.train.launch import run_training

VARIANTS = {
    "full": [],
    "no_noise_encoder": ["method.noise_encoder=false"],
    "no_repr_disc": ["method.repr_disc=false"],
    "no_bcm": ["method.bcm=false"],
}
CPU_NETS = [  # reduced widths for a 2-core CPU; the official sizes are the config defaults
    "method.scm=false", "method.width=16", "method.n_res=2", "method.noise_dim=16", "method.disc_width=16",
    "method.disc_layers=3", "method.repr_widths=[16,32,32,64]", "method.norm=none", "method.n_down=1",
    "method.betas=[0.5,0.999]", "method.disc_growth=constant", "method.repr_updates=own",
]  # fmt: skip


def row(name: str, rows: list[dict], extra: str = "") -> str:
    psnr = format_mean_std([r["psnr"] for r in rows])
    ssim = format_mean_std([r["ssim"] for r in rows], 3)
    return f"| {name} | {psnr} | {ssim} | {extra} |"


def lir_row(name: str, runs: list[tuple[int, list[dict]]], minutes: float) -> str:
    """One LIR variant's row from its runs' (steps, per-image rows): over the held-out images for one seed, over the
    seeds' means for several."""
    steps = "/".join(str(n) for n, _ in runs)
    if len(runs) == 1:
        return row(f"LIR {name}", runs[0][1], f"{steps} steps, {minutes:g} min, 2 workers")
    means = [{k: float(np.mean([r[k] for r in rows])) for k in ("psnr", "ssim")} for _, rows in runs]
    per_seed = ", ".join(f"{m['psnr']:.2f}" for m in means)
    return row(f"LIR {name} ({len(runs)} seeds: {per_seed})", means, f"{steps} steps, {minutes:g} min, 2 workers")


def classical(pairs, sigma: float) -> list[str]:
    """Noisy input, TV (best weight of a grid), NLM and BM3D rows on (clean, noisy) HWC pairs (raytrain.baselines)."""
    rows_by = classical_rows(pairs, sigma / 255)
    out = [row(f"TV (weight {rows[0]['weight']}, oracle)" if name.startswith("TV") else name, rows)
           for name, rows in rows_by.items()]  # fmt: skip
    return out if any(k.startswith("BM3D") for k in rows_by) else [*out, "| BM3D | not run: pip install bm3d | | |"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=5.0, help="training budget per variant")
    ap.add_argument("--variants", default="full,no_noise_encoder,no_repr_disc,no_bcm")
    ap.add_argument("--sigma", type=float, default=25.0)
    ap.add_argument("--seeds", default="0", help="comma-separated seeds; each variant trains once per seed")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="raytrain-lir-")
    base = [f"workdir={work}", "method.name=lir", *CPU_NETS, "data.split=two_domain", f"data.noise.sigma={a.sigma}",
            "data.val_images=3", "data.val_crop=128", "data.split_seed=0", "data.max_size=192", "data.patches.size=48",
            "train.batch_size=8", "train.lr=0.0002", "train.weight_decay=0",
            "train.steps=1000000", f"train.max_minutes={a.minutes}",
            "train.val_every=100", "train.checkpoint_every=500", "train.log_every=50", "tracking.enabled=false",
            *a.overrides]  # fmt: skip
    ray.init(num_cpus=(os.cpu_count() or 2) + 1, include_dashboard=False, log_to_driver=False)
    lines = ["| method | PSNR (dB) | SSIM | training |", "|---|---|---|---|"]
    pairs = None
    seeds = [int(x) for x in a.seeds.split(",")]
    for name in a.variants.split(","):
        runs = []  # (steps, per-image rows) per seed
        for seed in seeds:
            cfg = load_config(None, [*base, f"name=lir-{name}-s{seed}", f"seed={seed}", *VARIANTS[name]])
            pairs = pairs or load_domains(cfg).val
            res = run_training(cfg)
            payload = load_inference(res.checkpoint)
            method = build_method(cfg, torch.device("cpu"), inference=True)
            for k in method.inference_nets:
                method.nets[k].load_state_dict(payload["nets"][k])
            method.train(False)
            runs.append((int(res.metrics["step"]), evaluate_pairs(method.restore, pairs)))
            vals = [h for h in res.history if np.isfinite(h.get("val_psnr", np.nan))]  # the validation reports
            print(f"LIR {name} seed {seed} validation curve (step: PSNR dB / SSIM): "
                  + ", ".join(f"{int(h['step'])}: {h['val_psnr']:.2f}/{h['val_ssim']:.3f}" for h in vals)
                  + f"; held-out {np.mean([r['psnr'] for r in runs[-1][1]]):.2f} dB", flush=True)  # fmt: skip
        lines.append(lir_row(name, runs, a.minutes))
        print(lines[-1], flush=True)
    lines[2:2] = classical(pairs, a.sigma)
    print(f"\nheld-out images: {len(pairs)} gray crops, AWGN sigma {a.sigma:g}; CPU nets: {' '.join(CPU_NETS)}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
