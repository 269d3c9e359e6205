"""Time per training step of the Ray Train loop against a plain single-process PyTorch loop, in one run.

Both train the same DnCNN at the same batch size with the same number of CPU threads. The Ray side is a 1-worker
``TorchTrainer`` (Ray Data patch stream, NaN guard, periodic reports) whose loop reports ``step_time_s``
(training steps only, validation and checkpoints excluded); the plain side is a ``for`` loop over in-memory
tensors. Target: ratio <= 1.10.

    python benchmarks/loop_overhead.py [--steps 60] [--depth 17] [--width 64] [--batch 16] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import ray
import torch

from raytrain.config import load_config
from raytrain.methods import build_method
from raytrain.train.launch import run_training


def plain_step_time(cfg, steps: int, threads: int) -> float:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    method = build_method(cfg, torch.device("cpu"))
    s = cfg.data.patches.size
    batches = [{"paired": {"clean": torch.rand(cfg.train.batch_size, 1, s, s),
                           "noisy": torch.rand(cfg.train.batch_size, 1, s, s)}} for _ in range(8)]  # fmt: skip
    for i in range(3):
        method.train_step(batches[i % 8], i)
    t0 = time.perf_counter()
    for i in range(steps):
        method.train_step(batches[i % 8], i)
        method.end_step()
    return (time.perf_counter() - t0) / steps


def ray_step_time(cfg) -> float:
    res = run_training(cfg)
    times = [r["step_time_s"] for r in res.history if r.get("step_time_s")]
    return statistics.median(times[1:] if len(times) > 2 else times)  # the first interval holds start-up


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--depth", type=int, default=17)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="raytrain-bench-")
    cfg = load_config(None, [
        f"workdir={work}", "name=overhead", f"method.depth={a.depth}", f"method.width={a.width}",
        f"train.batch_size={a.batch}", f"train.steps={a.steps}", "train.log_every=10", f"train.val_every={a.steps}",
        f"train.checkpoint_every={a.steps}", "scaling.num_workers=1", f"scaling.cpus_per_worker={a.threads}",
        "data.resample_noise=true", "data.max_size=256", "tracking.enabled=false", "data.val_crop=32",
    ])  # fmt: skip
    ray.init(num_cpus=a.threads + 1, include_dashboard=False, log_to_driver=False)
    ray_t = ray_step_time(cfg)
    ray.shutdown()
    plain_t = plain_step_time(cfg, a.steps, a.threads)
    print(
        f"DnCNN-{a.depth}x{a.width}, batch {a.batch}, {cfg.data.patches.size}px, {a.threads} threads, {a.steps} steps"
    )
    print(f"plain PyTorch loop: {plain_t * 1000:8.1f} ms/step")
    print(f"Ray Train loop:     {ray_t * 1000:8.1f} ms/step (1 worker, Ray Data stream, median of report intervals)")
    print(f"ratio ray/plain: {ray_t / plain_t:.3f} (target <= 1.10)")


if __name__ == "__main__":
    main()
