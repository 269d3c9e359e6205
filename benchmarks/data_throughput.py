"""Ray Data patch throughput against what a DnCNN training step consumes.

Prints patches/s of the Ray Data pipeline (64x64 crops + dihedral augmentation + fresh AWGN, streamed through
``iter_torch_batches`` at batch 16, as a Train worker reads it; then 64-px RGB at batch 64, with patches per
CPU-second of every process: 8-bit patches cut by Ray Data, converted and noised by the consumer as on its
device) and patches/s a DnCNN step consumes at batch 16
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
from raytrain.data.pipeline import patch_dataset, resolve_augment, stream_domain
from raytrain.methods import build_method


def tree_cpu() -> float:
    """CPU seconds of this process and all its children so far (the driver and Ray's processes)."""
    import psutil

    total = 0.0
    for p in [psutil.Process(), *psutil.Process().children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            continue
    return total


def data_rate(cfg, n: int, batch: int = 16) -> tuple[float, float, float]:
    """(patches/s, patches per CPU-second, patches per CPU-second without the device's part) of the paired stream as
    a worker consumes it: Ray Data cuts the blocks, ``iter_torch_batches`` hands them over, ``train.draw.on_device``
    converts 8-bit patches to float and draws the resampled noise (on the CPU here, where a GPU would). CPU-seconds
    of the driver and every Ray process over the steady state (start-up excluded)."""
    from raytrain.data.device_noise import generator
    from raytrain.data.pipeline import stream_noise
    from raytrain.train.draw import on_device

    col = load_domains(cfg)
    augment, _ = resolve_augment(cfg.data.patches.augment, col)
    # one pass of n patches (a run's passes are capped at PASS_BYTES: 1365 patches of 64 px RGB; their start-up is
    # not the steady state measured here)
    dom = stream_domain(cfg, "paired", col.domains["paired"])
    ds = patch_dataset(dom, n, cfg.data.patches.size, augment, cfg.seed, "paired")
    it = ds.iter_torch_batches(batch_size=batch, local_shuffle_buffer_size=256, drop_last=True)
    noise, gen = stream_noise(cfg, "paired"), generator(torch.device("cpu"), 0)
    t0, c0, seen, device_cpu = None, None, 0, 0.0
    for b in it:
        d0 = time.thread_time()  # this thread only (Ray's iterator threads run beside it)
        ready = on_device(b, noise, gen)
        if t0 is None:  # exclude pipeline start-up (task launch) from the steady-state rate
            t0, c0 = time.perf_counter(), tree_cpu()
            continue
        device_cpu += time.thread_time() - d0  # what a GPU does: float conversion and the noise
        seen += ready["noisy"].shape[0]
    wall, cpu = time.perf_counter() - t0, tree_cpu() - c0
    return seen / wall, seen / cpu, seen / (cpu - device_cpu)


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
    ap.add_argument("--rgb-patches", type=int, default=40000)
    ap.add_argument("--depth", type=int, default=17)
    ap.add_argument("--width", type=int, default=64)
    a = ap.parse_args()
    cfg = load_config(None, ["data.resample_noise=true", f"method.depth={a.depth}", f"method.width={a.width}",
                             "train.steps=1000", "train.batch_size=16"])  # fmt: skip
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    torch.set_num_threads(1)  # the consumer's conversion and noise: one thread, as a one-CPU worker
    d, *_ = data_rate(cfg, a.patches)
    rgb = load_config(None, ["data.resample_noise=true", "data.color=rgb", "data.patches.size=64",
                             "train.steps=1000", "train.batch_size=64"])  # fmt: skip
    rgb_rate, rgb_all, rgb_per_core = data_rate(rgb, a.rgb_patches, 64)
    ray.shutdown()
    torch.set_num_threads(os.cpu_count() or 1)
    c = step_rate(cfg)
    print(f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}, ray {ray.__version__}")
    print(f"Ray Data pipeline:  {d:9.1f} patches/s (64x64 gray, augment, fresh AWGN, batch 16)")
    print(f"64-px RGB stream:   {rgb_rate:9.1f} patches/s (uint8 patches, dihedral augmentation, batch 64)")
    print(f"  per CPU-second of the data path: {rgb_per_core:.0f} (target >= 10000 per core); counting the float "
          f"conversion and AWGN a GPU does, drawn on this CPU instead: {rgb_all:.0f}")  # fmt: skip
    print(f"DnCNN-{a.depth}x{a.width} step:  {c:9.1f} patches/s consumed (batch 16, fwd+bwd+Adam)")
    print(f"ratio data/consumption: {d / c:.1f}x (target >= 10x)")
    print("\npatches used / delivered per method (2000 steps, batch 16; target >= 0.95):")
    for name, overrides in METHODS.items():
        used, pulled = used_fraction(overrides)
        print(f"  {name:32s} {used:7d} / {pulled:7d} = {used / pulled:.3f}")


if __name__ == "__main__":
    main()
