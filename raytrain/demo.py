"""``raytrain demo``: the README's main job, on the embedded defaults (local Ray, MLflow on SQLite), in minutes on
2 CPU cores.

1. A small paired-count ablation of SeNM-VAE -> DnCNN on the bundled photographs with camera-like noise: for each
   paired count, the pipeline (noise model -> synthetic pairs -> DnCNN) beside a DnCNN trained on the real pairs only,
   all scored on the same held-out real pairs.
2. A short LIR run (unsupervised, blind AWGN) beside its noisy input.
Prints the results table, writes it with two plots to ``runs/demo/``, and says how to open the MLflow UI. The
configs are the repository's CPU recipes (configs/senm_camera.yaml, configs/lir_awgn_blind.yaml), shortened.
"""

from __future__ import annotations

import time
from pathlib import Path

from raytrain.config import validate

SENM = {
    "method": {"name": "senm", "width": 16, "growth": 8, "z_dim": 16, "zn_dim": 4, "blocks_per_scale": [2],
               "level_net_width": 8, "disc_width": 16, "kl_anneal_steps": 60},
    "data": {"source": "samples", "color": "gray", "noise": {"kind": "camera", "preset": "mid"}, "split": "semi",
             "tiles": 64, "val_images": 3, "val_crop": 128, "max_size": 256, "patches": {"size": 48}},
    "train": {"steps": 120, "batch_size": 8, "lr": 2.0e-3, "schedule": {"kind": "multistep", "milestones": [90]},
              "val_every": 60, "checkpoint_every": 120, "log_every": 20},
    "scaling": {"num_workers": 2},
    "pipeline": {"arms": ["senm", "real_pairs"], "downstream": {
        "method": {"name": "dncnn", "depth": 8, "width": 32},
        "train": {"steps": 150, "batch_size": 16, "lr": 1.0e-3, "schedule": {"kind": "step", "step_size": 100,
                  "gamma": 0.3}, "val_every": 150, "checkpoint_every": 150, "log_every": 25}}},
}  # fmt: skip
LIR = {
    "method": {"name": "lir", "scm": False, "width": 16, "n_down": 1, "n_res": 1, "norm": "none", "noise_dim": 16,
               "disc_width": 16, "disc_layers": 3, "repr_widths": [16, 32, 32, 64], "betas": [0.5, 0.999]},
    "data": {"source": "samples", "split": "two_domain", "noise": {"kind": "awgn", "sigma": [5, 50]}, "val_images": 3,
             "val_crop": 96, "max_size": 128, "patches": {"size": 32}},
    "train": {"steps": 120, "batch_size": 8, "lr": 2.0e-4, "val_every": 60, "checkpoint_every": 120, "log_every": 20},
    "scaling": {"num_workers": 2},
}  # fmt: skip
COUNTS = (10, 40)


def run_demo(workdir: str = "runs/demo", counts: tuple[int, ...] = COUNTS, quick: bool = False) -> dict:
    """Run everything; returns the table rows. ``quick`` cuts every run to a few steps (tests)."""
    from raytrain.noise_pipeline import run_pipeline
    from raytrain.train.launch import run_training

    t0 = time.perf_counter()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    rows: dict[str, dict[int, float]] = {"senm": {}, "real_pairs": {}}
    kld: dict[int, float] = {}
    noisy = None
    for i, count in enumerate(counts):
        print(f"\n[demo] {i + 1}/{len(counts) + 1}: SeNM-VAE -> DnCNN with {count} paired tiles")
        raw = _with(SENM, workdir, f"demo-senm{count}-{stamp}", quick) | {"seed": 0}
        raw["data"] = raw["data"] | {"paired": {"count": count}}
        res = run_pipeline(validate(raw, "demo"))
        for arm in rows:
            rows[arm][count] = res.rows[arm]["psnr"]
        kld[count] = res.rows["senm"]["kld"]
        noisy = res.rows["senm"]["psnr_noisy"]
    print(f"\n[demo] {len(counts) + 1}/{len(counts) + 1}: LIR (unsupervised), blind AWGN sigma in [5, 50]")
    lir_run = run_training(validate(_with(LIR, workdir, f"demo-lir-{stamp}", quick), "demo"))
    lir = lir_run.metrics
    out = Path(workdir).resolve()
    report = write_report(out, counts, rows, kld, noisy, lir, time.perf_counter() - t0)
    curve = [(int(h["step"]), float(h["val_psnr"])) for h in lir_run.history if h.get("val_psnr") is not None]
    from raytrain.tune.ablate import plot_curves

    plot_curves({"LIR validation PSNR": [curve], "noisy input": [[(s, lir["val_psnr_noisy"]) for s, _ in curve]]},
                "PSNR (dB)", out / "lir_curve.png")  # fmt: skip
    return {"rows": rows, "kld": kld, "lir": lir, "report": report, "wall_s": time.perf_counter() - t0}


def _with(base: dict, workdir: str, name: str, quick: bool) -> dict:
    import copy

    raw = copy.deepcopy(base) | {"workdir": workdir, "name": name}
    if quick:
        raw["train"] |= {"steps": 4, "val_every": 4, "checkpoint_every": 4, "log_every": 2}
        raw["scaling"] = {"num_workers": 1}
        raw["data"] |= {"max_size": 128, "val_images": 1, "val_crop": 64}
        if "tiles" in raw["data"]:
            raw["data"] |= {"tiles": 48}
        if "pipeline" in raw:
            raw["pipeline"]["downstream"]["train"] |= {"steps": 4, "val_every": 4, "checkpoint_every": 4}
    return raw


def write_report(out: Path, counts, rows, kld, noisy, lir, wall: float) -> Path:
    from raytrain.tracking import resolve_uri
    from raytrain.tune.ablate import plot_metric

    out.mkdir(parents=True, exist_ok=True)
    head = "| DnCNN trained on | " + " | ".join(f"{c} paired tiles" for c in counts) + " |"
    lines = [head, "|---|" + "---|" * len(counts)]
    lines.append(
        "| SeNM-VAE synthetic + real pairs | " + " | ".join(f"{rows['senm'][c]:.2f} dB" for c in counts) + " |"
    )
    lines.append("| real pairs only | " + " | ".join(f"{rows['real_pairs'][c]:.2f} dB" for c in counts) + " |")
    lines.append("| (SeNM-VAE noise KLD) | " + " | ".join(f"{kld[c]:.4f}" for c in counts) + " |")
    table = "\n".join(lines)
    text = (
        f"# raytrain demo ({wall / 60:.1f} min)\n\nSeNM-VAE -> DnCNN, camera-like noise (mid preset), PSNR on the "
        f"held-out real pairs (noisy input {noisy:.2f} dB):\n\n{table}\n\n"
        f"LIR (unsupervised, blind AWGN sigma in [5, 50], {int(lir.get('step', 0))} steps): "
        f"{lir['val_psnr']:.2f} dB vs noisy input {lir['val_psnr_noisy']:.2f} dB, "
        f"SSIM {lir['val_ssim']:.3f} vs {lir['val_ssim_noisy']:.3f}\n\n"
        "Scale: a smoke test of the whole system on 2 CPU workers, not the papers' results. The noise model and "
        "each DnCNN train for a minute or two (the papers: "
        "hundreds of thousands of GPU iterations); a SeNM-VAE this short reconstructs content poorly, so its synthetic "
        "pairs can hurt the denoiser. Longer runs and how to make them: README, Results.\n"
    )
    (out / "results.md").write_text(text)
    cells = [{"paired": c, "arm": a, "mean": rows[a][c], "std": 0.0, "n": 1} for a in rows for c in counts]
    plot_metric(cells, ["paired", "arm"], "DnCNN PSNR (dB)", out / "psnr_vs_paired.png")
    print("\n" + text)
    print(f"plots and table: {out}/ (results.md, psnr_vs_paired.png, lir_curve.png)")
    print(f"MLflow UI: mlflow ui --backend-store-uri {resolve_uri(None, out)} --host 127.0.0.1  "
          "(then open http://127.0.0.1:5000)")  # fmt: skip
    return out / "results.md"
