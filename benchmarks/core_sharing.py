"""How much a plain PyTorch loop slows down when it shares its cores with processes that only wake up: the cost a
Ray run's own processes put on a training loop that uses every core (``loop_overhead.py``'s gap on a 2-core machine).

Every Ray worker process (each actor: Train's controller, synchronisation, placement-group cleaner, preemption
watcher, Ray Data's stats and autoscaling coordinators, pooled idle workers) wakes about every 10 ms even when it has
nothing to do; the raylet, GCS and dashboard agent wake too. With as many intra-op threads as cores, each wake-up
pre-empts one of them and the other waits at the op's barrier: a loop of many small ops (LIR, SeNM-VAE at the CPU
recipes' widths) pays far more than the CPU the wake-ups use, a loop of few large ops (DnCNN) little.

Here K plain Python processes that do nothing but sleep 10 ms in a loop stand in for Ray's; no Ray runs. The plain
loop (``loop_overhead.plain_step_time``: in-memory batches, the method's own ``train_step``) is timed without and
with them, interleaved, and the medians compared:

    python benchmarks/core_sharing.py [--wakers 15] [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from loop_overhead import plain_step_time, process_cpu  # noqa: E402

from raytrain.config import load_config  # noqa: E402

WAKER = "import time\nwhile True:\n    time.sleep(0.01)"  # Ray's per-process 10 ms timer, nothing else

METHODS = {  # (config, overrides, steps timed, first step): loop_overhead.py's settings for each method
    "dncnn": (None, ["method.name=dncnn", "method.depth=17", "method.width=64"], 10, 6),
    "lir": ("configs/lir_awgn_blind.yaml", ["data.patches.size=48"], 20, 6),
    "senm": ("configs/senm_pipeline.yaml", [], 20, 6),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--wakers", type=int, default=15, help="processes that wake every 10 ms (a Ray run has ~15)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--methods", default="dncnn,lir,senm")
    a = ap.parse_args()
    root = Path(__file__).resolve().parent.parent
    base = ["workdir=/tmp/raytrain-core-sharing", "tracking.enabled=false", "data.max_size=256", "train.batch_size=16"]
    cfgs = {}
    for name in a.methods.split(","):
        path, extra, steps, first = METHODS[name]
        cfgs[name] = (load_config(str(root / path) if path else None, [*base, *extra]), steps, first)
    times: dict[tuple[str, bool], list[float]] = {}
    share: list[float] = []
    for rep in range(a.repeats):
        for on in (False, True) if rep % 2 == 0 else (True, False):  # interleaved: this machine's speed drifts
            wakers = [subprocess.Popen([sys.executable, "-c", WAKER]) for _ in range(a.wakers if on else 0)]
            time.sleep(1.0)
            try:
                for name, (cfg, steps, first) in cfgs.items():
                    before, t0 = process_cpu(), time.perf_counter()
                    times.setdefault((name, on), []).append(plain_step_time(cfg, steps, a.threads, first))
                    after, wall = process_cpu(), time.perf_counter() - t0
                    if on:
                        pids = {w.pid for w in wakers}
                        used = sum(c - before.get(p, ("", 0.0))[1] for p, (_, c) in after.items() if p in pids)
                        share.append(used / (wall * (os.cpu_count() or 1)))
            finally:
                for w in wakers:
                    w.kill()
                    w.wait()
        print(f"repeat {rep + 1}/{a.repeats}: " + ", ".join(
            f"{n} {times[(n, False)][-1] * 1000:.0f} / {times[(n, True)][-1] * 1000:.0f} ms" for n in cfgs
        ), flush=True)  # fmt: skip
    cpu = f"{100 * statistics.median(share):.1f} %" if share else "-"
    print(f"plain loop, {a.threads} threads, alone vs beside {a.wakers} processes waking every 10 ms "
          f"(they use {cpu} of the machine's CPU); medians of {a.repeats} interleaved repeats:")  # fmt: skip
    print(f"{'method':8} {'alone ms/step':>14} {'beside ms/step':>15} {'slowdown':>9}")
    for name in cfgs:
        alone, beside = statistics.median(times[(name, False)]), statistics.median(times[(name, True)])
        print(f"{name:8} {alone * 1000:14.1f} {beside * 1000:15.1f} {beside / alone:9.3f}")


if __name__ == "__main__":
    main()
