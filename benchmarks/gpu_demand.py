"""How many patches a GPU consumes per method, and how many CPU cores of the data path feed one.

For each method at its paper widths, the FLOPs of one training step per patch (``torch.utils.flop_counter``'s
``FlopCounterMode`` over ``Method.train_step``: every net's forward and backward, discriminators and perceptual
backbones included; the optimiser's element-wise updates are not counted), and the patches/s one GPU consumes at
200 and 400 TFLOP/s of dense bf16 (an H100 runs 200-400 in practice). Beside them the data path's measured rate per
CPU core (``benchmarks/data_throughput.py``'s "per CPU-second of the data path"; ``--per-core``): how many cores
feed one GPU, and an 8-GPU node. When a GPU is lent, ``--measure`` times the real step there and prints its rate.

    python benchmarks/gpu_demand.py [--per-core 14979] [--size 64] [--measure]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from raytrain.config import load_config
from raytrain.methods import build_method

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
# each method at its paper widths (weights of pretrained backbones: random ones, the same FLOPs)
METHODS = {
    "DnCNN-17x64": (None, ["method.name=dncnn"]),
    "DRUNet (64-512)": (None, ["method.name=drunet"]),
    "LIR (official sizes, SCM VGG-19)": ("configs/lir_paper.yaml", ["method.scm_backbone=random"]),
    "SeNM-VAE (paper)": ("configs/senm_paper.yaml", ["method.perceptual_backbone=random"]),
    "RRDB x4 (23 blocks, 64 px LR)": (None, ["method.name=rrdb", "data.scale=4", "data.source=samples"]),
}


def batch_for(method, size: int, n: int, scale: int, device) -> dict:
    """A batch of every domain the method draws, ``n`` random patches each (HR clean patches ``scale`` x larger)."""
    ch = method.channels
    out = {}
    for d in method.domains:
        keys = {"paired": ("clean", "noisy"), "source": ("clean",), "target": ("noisy",)}[d]
        out[d] = {k: torch.rand(n, ch, size * (scale if k == "clean" else 1), size * (scale if k == "clean" else 1),
                                device=device) for k in keys}  # fmt: skip
    return out


def step_flops(cfg, size: int, n: int = 2) -> tuple[float, object, dict]:
    """FLOPs of one training step per patch it consumes (``n`` patches of each domain the step draws; averaged over
    three steps, so a method that draws one domain per step is counted on each)."""
    method = build_method(cfg, torch.device("cpu"))
    batches = batch_for(method, size, n, cfg.data.scale, "cpu")
    total, steps = 0.0, 0
    for step in range(1, 4):
        domains = method.domains if method.draw == "all" else (method.domains[(step - 1) % len(method.domains)],)
        b = {d: batches[d] for d in domains}
        patches = n * len(domains)  # what the step consumed
        with FlopCounterMode(display=False) as fc:
            method.train_step(b, step)
        method.end_step()
        total += fc.get_total_flops() / patches
        steps += 1
    return total / steps, method, batches


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-core", type=float, default=14979.0, help="the data path's patches per CPU-second")
    ap.add_argument("--size", type=int, default=64, help="patch side (LR side for SR)")
    ap.add_argument("--measure", action="store_true", help="also time the step on the GPU (when one is there)")
    a = ap.parse_args()
    torch.manual_seed(0)
    print(f"patches of {a.size} px, RGB; data path {a.per_core:.0f} patches per CPU core-second")
    print("| method | GFLOP / patch (step) | patches/s @200 TFLOP/s | @400 | cores / GPU @200-400 | cores / 8 GPUs "
          "| measured on GPU |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for name, (path, sets) in METHODS.items():
        cfg = load_config(ROOT / path if path else None, [*sets, "data.color=rgb", f"data.patches.size={a.size}"])
        flops, _, _ = step_flops(cfg, a.size)
        lo, hi = 200e12 / flops, 400e12 / flops
        measured = "-"
        if a.measure and torch.cuda.is_available():
            measured = f"{gpu_rate(cfg, a.size):.0f} patches/s"
        print(f"| {name} | {flops / 1e9:.1f} | {lo:,.0f} | {hi:,.0f} | {lo / a.per_core:.2f}-{hi / a.per_core:.2f} "
              f"| {8 * lo / a.per_core:.1f}-{8 * hi / a.per_core:.1f} | {measured} |")  # fmt: skip


def gpu_rate(cfg, size: int, n: int = 16, steps: int = 20) -> float:
    """Patches/s of the real training step on the GPU (bf16 autocast as ``train.precision: bf16``)."""
    device = torch.device("cuda")
    method = build_method(cfg, device)
    batches = batch_for(method, size, n, cfg.data.scale, device)
    used = 0
    for step in range(1, steps + 6):
        if step == 6:
            torch.cuda.synchronize()
            t0, used = time.perf_counter(), 0
        domains = method.domains if method.draw == "all" else (method.domains[step % len(method.domains)],)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            method.train_step({d: batches[d] for d in domains}, step)
        method.end_step()
        used += n * len(domains)
    torch.cuda.synchronize()
    return used / (time.perf_counter() - t0)


if __name__ == "__main__":
    main()
