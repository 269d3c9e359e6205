"""What one tiny Ray Train run costs in CPU, process by process: the floor under every end-to-end test (issue 37).

Runs ``--runs`` (3) tiny DnCNN runs (``--workers`` 2, 20 steps, MLflow off but on the last) on an embedded local Ray
as the test suite's shared fixture starts it, while a sampler records every process's CPU time (user + system) from the
first time it sees it to the last. Prints per run the wall time and its start-up phases (``startup_<phase>_s``: the
worker group's loop entered, the nets built, the first patches), then the CPU-seconds per run of each kind of
process (Ray Train's controller, workers and helper actors, Ray Data's, raytrain's own actors, the driver) and the
training steps' share of it. ``RAY_TRAIN_ENABLE_PREEMPTION_WATCHER`` is left as the environment has it (raytrain's
embedded Ray sets 0; run with ``RAY_TRAIN_ENABLE_PREEMPTION_WATCHER=1`` for Ray's default).

    python benchmarks/run_cost.py [--runs 3] [--steps 20] [--workers 2]
"""

from __future__ import annotations

from raytrain import localray

localray.prefer_loopback()  # before Ray is imported: this benchmark's local Ray listens on 127.0.0.1 only

import argparse
import collections
import os
import re
import tempfile
import threading
import time

import psutil


class Sampler(threading.Thread):
    """Every process's CPU time, first and last seen (0.1 s apart), keyed by (pid, start time), named by the first
    actor title it showed (``ray::Name``; a pooled worker shows ``ray::IDLE`` or its launch command until then)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.first: dict = {}
        self.last: dict = {}
        self.stop = threading.Event()

    def run(self) -> None:
        me = os.getpid()
        while not self.stop.is_set():
            for p in psutil.process_iter(["pid", "cmdline", "cpu_times", "create_time"]):
                info = p.info
                if not info["cpu_times"]:
                    continue
                key = (info["pid"], info["create_time"])
                cpu = info["cpu_times"].user + info["cpu_times"].system
                name = "driver" if info["pid"] == me else " ".join(info["cmdline"] or [])
                self.first.setdefault(key, (name, cpu, info["create_time"]))
                best = self.last.get(key, ("", 0.0))[0]
                if not best.startswith("ray::") or best.startswith("ray::IDLE"):  # the actor's name, once it has one
                    best = name
                self.last[key] = (best, cpu)
            self.stop.wait(0.1)

    def by_kind(self, since: float) -> dict[str, tuple[float, int]]:
        """CPU-seconds and process count per kind of process, for processes seen since ``since``."""
        out: dict[str, list] = collections.defaultdict(lambda: [0.0, 0])
        for key, (name, cpu0, created) in self.first.items():
            name = self.last[key][0] or name
            kind = kind_of(name)
            if kind is None:
                continue
            born_here = created >= since
            out[kind][0] += self.last[key][1] - (0.0 if born_here else cpu0)
            out[kind][1] += born_here
        return {k: (v[0], v[1]) for k, v in out.items() if v[0] > 0.05}


def kind_of(cmdline: str) -> str | None:
    if cmdline == "driver":
        return "driver (this process)"
    m = re.match(r"ray::(\w+)", cmdline)
    if m:
        return f"ray::{m.group(1)}"
    if "default_worker" in cmdline:  # before the daemons: a worker's command line names the raylet too
        return "ray worker (pooled, not yet an actor)"
    for daemon in ("raylet", "gcs_server", "dashboard", "log_monitor", "runtime_env", "monitor.py"):
        if daemon in cmdline:
            return "Ray daemons"
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2, help="Train workers per run (the suite's TINY: see tests)")
    args = ap.parse_args()
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.25")
    os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    import ray

    from raytrain.config import load_config
    from raytrain.train.launch import run_training

    sampler = Sampler()
    sampler.start()
    ray.init(num_cpus=8, include_dashboard=False, log_to_driver=False, resources={"trial_slot": 64})
    tiny = ["method.depth=5", "method.width=16", "train.batch_size=8", "data.patches.size=32", "data.max_size=128",
            "data.val_crop=64", f"scaling.num_workers={args.workers}", "data.resample_noise=true",
            f"train.steps={args.steps}", f"train.val_every={args.steps}", f"train.checkpoint_every={args.steps}",
            "train.log_every=10"]  # fmt: skip
    print(f"preemption watcher: {os.environ['RAY_TRAIN_ENABLE_PREEMPTION_WATCHER']}")
    time.sleep(2)
    t_all = time.time()
    with tempfile.TemporaryDirectory() as work:
        train_s = 0.0
        for i in range(args.runs):
            track = [] if i == args.runs - 1 else ["tracking.enabled=false"]
            cfg = load_config(None, [f"workdir={work}/r{i}", f"name=r{i}", *tiny, *track])
            t0 = time.time()
            m = run_training(cfg).metrics
            phases = ", ".join(f"{k[8:-2]} {v:.1f}" for k, v in m.items() if k.startswith("startup_") and k[8:-2])
            train_s += m["step_time_s"] * args.steps
            mlflow = "on" if not track else "off"
            print(f"run {i}: {time.time() - t0:5.1f} s wall (MLflow {mlflow}); first step at {m['startup_s']:.1f} s "
                  f"[{phases}]; {args.steps} steps x {m['step_time_s'] * 1e3:.0f} ms")  # fmt: skip
    time.sleep(1)
    sampler.stop.set()
    sampler.join()
    kinds = sampler.by_kind(t_all)
    total = sum(cpu for cpu, _ in kinds.values())
    print(f"\nCPU-seconds per run ({args.runs} runs, {time.time() - t_all:.0f} s wall):")
    for kind, (cpu, n) in sorted(kinds.items(), key=lambda kv: -kv[1][0]):
        print(f"  {cpu / args.runs:6.2f}  {kind}  ({n / args.runs:.1f} new processes per run)")
    print(
        f"  {total / args.runs:6.2f}  total; the training steps themselves: ~{args.workers * train_s / args.runs:.2f} "
        f"({args.workers} workers x step time x steps)"
    )
    ray.shutdown()


if __name__ == "__main__":
    main()
