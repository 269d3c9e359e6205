"""Ray Data patch throughput against what a DnCNN training step consumes.

Prints patches/s of the Ray Data pipeline (64x64 crops + dihedral augmentation + fresh AWGN, streamed through
``iter_torch_batches`` at batch 16, as a Train worker reads it) and patches/s a DnCNN step consumes at batch 16
(17 layers, 64 channels, forward+backward+Adam, this machine's CPU threads), and their ratio. Target: ratio >= 10.
Then, per method, the share of the patches its domain streams deliver that its steps use (the training loop's own
draw code, ``draw.draw_batches``, over 2000 steps of counted streams; target >= 0.95). Each live run logs the same
figure as ``patches_used_fraction``.

    python benchmarks/data_throughput.py [--patches 4000] [--depth 17] [--width 64]
"""

from __future__ import annotations

from raytrain import localray

localray.prefer_loopback()  # before Ray is imported: this benchmark's local Ray listens on 127.0.0.1 only

import argparse
import os
import time

import ray
import torch

from raytrain.config import load_config
from raytrain.data.collection import load_domains
from raytrain.data.pipeline import build_datasets
from raytrain.methods import build_method


def data_rate(cfg, n: int) -> float:
    col = load_domains(cfg)
    ds = build_datasets(cfg, col, ("paired",), 1)["paired"].limit(n)
    it = ds.iter_torch_batches(batch_size=16, local_shuffle_buffer_size=256, drop_last=True)
    t0, seen = None, 0
    for batch in it:
        if t0 is None:  # exclude pipeline start-up (task launch) from the steady-state rate
            t0 = time.perf_counter()
            continue
        seen += batch["clean"].shape[0]
    return seen / (time.perf_counter() - t0)


def step_rate(cfg, steps: int = 12) -> float:
    method = build_method(cfg, torch.device("cpu"))
    b = {"paired": {"clean": torch.rand(16, 1, 64, 64), "noisy": torch.rand(16, 1, 64, 64)}}
    for s in range(3):
        method.train_step(b, s)
    t0 = time.perf_counter()
    for s in range(steps):
        method.train_step(b, s)
    return 16 * steps / (time.perf_counter() - t0)


METHODS = {  # the draw each method's recipe uses; SeNM-VAE both ways (batch: the paper's, sample: the official)
    "dncnn": [],
    "lir": ["method.name=lir", "method.scm=false"],
    "senm (domain_sampling batch)": ["method.name=senm", "data.mix={paired: 4, source: 1, target: 1}"],
    "senm (domain_sampling sample)": ["method.name=senm", "method.domain_sampling=sample",
                                      "data.mix={paired: 4, source: 1, target: 1}"],
}  # fmt: skip


def used_fraction(overrides: list[str], steps: int = 2000) -> tuple[int, int]:
    """(patches used, patches delivered) by the loop's draws over ``steps`` steps of counted streams."""
    from raytrain.train.draw import PatchBuffer, draw_batches

    cfg = load_config(None, [*overrides, "train.batch_size=16"])
    method = build_method(cfg, torch.device("cpu"))

    def stream():
        while True:
            yield {"clean": torch.zeros(16, 1)}

    buffers = {d: PatchBuffer(stream()) for d in method.domains}
    for step in range(1, steps + 1):
        draw_batches(method, cfg, buffers, step)
    return sum(b.used for b in buffers.values()), sum(b.pulled for b in buffers.values())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patches", type=int, default=4000)
    ap.add_argument("--depth", type=int, default=17)
    ap.add_argument("--width", type=int, default=64)
    a = ap.parse_args()
    cfg = load_config(None, ["data.resample_noise=true", f"method.depth={a.depth}", f"method.width={a.width}",
                             "train.steps=1000", "train.batch_size=16"])  # fmt: skip
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    d = data_rate(cfg, a.patches)
    ray.shutdown()
    torch.set_num_threads(os.cpu_count() or 1)
    c = step_rate(cfg)
    print(f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}, ray {ray.__version__}")
    print(f"Ray Data pipeline:  {d:9.1f} patches/s (64x64, augment, fresh AWGN, batch 16)")
    print(f"DnCNN-{a.depth}x{a.width} step:  {c:9.1f} patches/s consumed (batch 16, fwd+bwd+Adam)")
    print(f"ratio data/consumption: {d / c:.1f}x (target >= 10x)")
    print("\npatches used / delivered per method (2000 steps, batch 16; target >= 0.95):")
    for name, overrides in METHODS.items():
        used, pulled = used_fraction(overrides)
        print(f"  {name:32s} {used:7d} / {pulled:7d} = {used / pulled:.3f}")


if __name__ == "__main__":
    main()
