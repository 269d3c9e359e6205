"""The precision table: step time of each method's training step at fp32, bf16 (and fp16 on a GPU), with and
without channels-last, on this machine's device (a GPU when one is visible, else the CPU), in one run.

Each row trains the method's own step (``Method.train_step`` under ``Precision.autocast``, as the training loop
runs it; fp16 with its GradScaler) on in-memory batches after a warm-up, and prints ms/step, samples/s and the
speed-up over fp32 at the same layout. Widths: the CPU recipes (DnCNN 17 x 64, configs/lir_awgn_blind.yaml,
configs/senm_pipeline.yaml) unless ``--paper`` (the papers' widths, for a GPU).

    python benchmarks/precision.py [--steps 10] [--methods dncnn,lir,senm] [--batch 16] [--size 48] [--paper]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch

from raytrain.config import load_config
from raytrain.methods import build_method
from raytrain.train.loop import fast_nets

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIGS = {  # the CPU recipes; --paper: the papers' own widths
    "dncnn": (None, ["method.name=dncnn", "method.depth=17", "method.width=64"]),
    "lir": (os.path.join(HERE, "..", "configs", "lir_awgn_blind.yaml"), []),
    "senm": (os.path.join(HERE, "..", "configs", "senm_pipeline.yaml"), []),
}
PAPER = {
    "dncnn": (None, ["method.name=dncnn", "method.depth=17", "method.width=64"]),
    "lir": (os.path.join(HERE, "..", "configs", "lir_paper.yaml"), ["method.scm_backbone=random"]),
    "senm": (os.path.join(HERE, "..", "configs", "senm_paper.yaml"), ["method.perceptual_backbone=random"]),
}


def batches(method, cfg, device: torch.device, n: int = 4) -> list[dict]:
    keys = {"paired": ("clean", "noisy"), "source": ("clean",), "target": ("noisy",)}
    c, s, b = (1 if cfg.data.color == "gray" else 3), cfg.data.patches.size, cfg.train.batch_size
    fmt = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
    return [
        {d: {k: torch.rand(b, c, s, s, device=device).contiguous(memory_format=fmt) for k in keys[d]}
         for d in method.domains}
        for _ in range(n)
    ]  # fmt: skip


def step_time(cfg, device: torch.device, steps: int) -> float:
    torch.manual_seed(0)
    method = build_method(cfg, device)
    fast_nets(cfg, method)
    method.train(True)
    data = batches(method, cfg, device)

    def run(i: int) -> None:
        with method.precision.autocast():
            method.train_step(data[i % len(data)], i + 1)
        method.end_step()

    for i in range(2):  # warm-up: allocator, cuDNN autotuning
        run(i)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(steps):
        run(i)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--methods", default="dncnn,lir,senm")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--size", type=int, default=48, help="patch size")
    ap.add_argument("--paper", action="store_true", help="the papers' widths (for a GPU)")
    a = ap.parse_args()
    gpu = torch.cuda.is_available()
    device = torch.device("cuda" if gpu else "cpu")
    if not gpu:
        torch.set_num_threads(os.cpu_count() or 1)
    where = torch.cuda.get_device_name(0) if gpu else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {where}; torch {torch.__version__}; batch {a.batch}, {a.size} px, {a.steps} steps after 2")
    precisions = ["fp32", "bf16", "fp16"] if gpu else ["fp32", "bf16"]
    work = tempfile.mkdtemp(prefix="raytrain-precision-")
    print("\n| method | precision | channels-last | ms/step | samples/s | vs fp32 |\n|---|---|---|---|---|---|")
    for name in a.methods.split(","):
        path, sets = (PAPER if a.paper else CONFIGS)[name]
        for last in (False, True):
            base = None
            for p in precisions:
                cfg = load_config(path, [
                    f"workdir={work}", *sets, f"train.batch_size={a.batch}", f"data.patches.size={a.size}",
                    f"train.precision={p}", f"train.channels_last={str(last).lower()}", "tracking.enabled=false",
                    f"scaling.use_gpu={str(gpu).lower()}",
                ])  # fmt: skip
                t = step_time(cfg, device, a.steps)
                base = base or t
                print(f"| {name} | {p} | {'yes' if last else 'no'} | {t * 1000:.1f} | {a.batch / t:.1f} | "
                      f"{base / t:.2f}x |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
