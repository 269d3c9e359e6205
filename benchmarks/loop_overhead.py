"""Time per training step of the Ray Train loop against a plain single-process PyTorch loop, in one run.

Both train the same DnCNN at the same batch size with the same number of CPU threads. The Ray side is a 1-worker
``TorchTrainer`` (Ray Data patch stream, NaN guard, periodic reports) whose loop reports ``step_time_s``
(training steps only, validation and checkpoints excluded); the plain side is a ``for`` loop over in-memory
tensors. Target: ratio <= 1.10.

    python benchmarks/loop_overhead.py [--steps 60] [--depth 17] [--width 64] [--batch 16] [--threads 2]
    python benchmarks/loop_overhead.py --method lir --steps 6 --log-every 2 --set method.scm_backbone=random
    python benchmarks/loop_overhead.py --minutes 2   # a run sized by a time budget (train.steps 1e6, max_minutes)

``--minutes M`` declares the Ray run as ``train.steps=1000000`` stopped by ``train.max_minutes=M``, as the demo and
``lir_quality.py`` run: the patch streams are then as long as a long run's (the case where one endless pass kept
Ray Data's executor spinning beside training).
"""

from __future__ import annotations

from raytrain import localray

localray.prefer_loopback()  # before Ray is imported: this benchmark's local Ray listens on 127.0.0.1 only

import argparse
import os
import statistics
import tempfile
import time

import ray
import torch

from raytrain.config import load_config
from raytrain.methods import build_method
from raytrain.train.launch import DATA_CPUS_PER_RUN, run_training


def fake_batch(domains: tuple[str, ...], n: int, c: int, s: int) -> dict:
    keys = {"paired": ("clean", "noisy"), "source": ("clean",), "target": ("noisy",)}
    return {d: {k: torch.rand(n, c, s, s) for k in keys[d]} for d in domains}


def plain_step_time(cfg, steps: int, threads: int) -> float:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    method = build_method(cfg, torch.device("cpu"))
    c = 1 if cfg.data.color == "gray" else 3
    batches = [fake_batch(method.domains, cfg.train.batch_size, c, cfg.data.patches.size) for _ in range(4)]
    warm = min(3, max(1, steps // 3))
    for i in range(warm):
        method.train_step(batches[i % 4], i)
    t0 = time.perf_counter()
    for i in range(steps):
        method.train_step(batches[i % 4], i)
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
    ap.add_argument("--method", default="dncnn")
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--minutes", type=float, default=None, help="size the Ray run as 1e6 steps stopped after M minutes")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="extra config overrides")
    a = ap.parse_args()
    sizes = [f"method.depth={a.depth}", f"method.width={a.width}"] if a.method == "dncnn" else []
    work = tempfile.mkdtemp(prefix="raytrain-bench-")
    split = "two_domain" if a.method == "lir" else "semi"
    n = a.steps if a.minutes is None else 1_000_000
    budget = [] if a.minutes is None else [f"train.max_minutes={a.minutes}"]
    cfg = load_config(None, [
        f"workdir={work}", "name=overhead", f"method.name={a.method}", *sizes, f"data.split={split}",
        f"train.batch_size={a.batch}", f"train.steps={n}", f"train.log_every={a.log_every}", *budget,
        f"train.val_every={n}", f"train.checkpoint_every={n}", "scaling.num_workers=1",
        f"scaling.cpus_per_worker={a.threads}",
        "data.resample_noise=true", "data.max_size=256", "tracking.enabled=false", "data.val_crop=32", *a.overrides,
    ])  # fmt: skip
    # one logical CPU per patch dataset beside the worker, as raytrain's own embedded Ray (launch.DATA_CPUS_PER_RUN):
    # with one spare CPU, Ray Data gives LIR's second domain 0 CPUs and its coordinator spins on the same cores
    ray.init(num_cpus=a.threads + DATA_CPUS_PER_RUN, include_dashboard=False, log_to_driver=False)
    ray_t = ray_step_time(cfg)
    ray.shutdown()
    plain_t = plain_step_time(cfg, a.steps, a.threads)
    print(
        f"{'DnCNN-' + str(a.depth) + 'x' + str(a.width) if a.method == 'dncnn' else a.method}, batch {a.batch}, "
        f"{cfg.data.patches.size}px, {a.threads} threads, {a.steps} steps"
    )
    print(f"plain PyTorch loop: {plain_t * 1000:8.1f} ms/step")
    sized = f", sized as 1e6 steps, {a.minutes:g} min" if a.minutes is not None else ""
    print(f"Ray Train loop:     {ray_t * 1000:8.1f} ms/step (1 worker, Ray Data stream, median of reports{sized})")
    print(f"ratio ray/plain: {ray_t / plain_t:.3f} (target <= 1.10)")


if __name__ == "__main__":
    main()
