"""Where a Tune trial's start-up goes: trial start -> first training step, phase by phase, for one-worker trials run
in the trial's own process (``scaling.trial_runner: auto``) and by a TorchTrainer per trial (``trainer``), and for a
two-worker trial (always a TorchTrainer). Target (issue 15): <= 5 s for one-worker trials after the sweep's first.

Each phase is the time from the trial's start to the end of that phase (``startup_<phase>_s``, logged with every
validation of every run): mlflow (the trial's child run created), images (the collection read and split), datasets
(Ray Data patch streams built), loop (the training loop entered: for ``trainer``, the worker group, its process group
and Ray Train's set-up), nets (the method built and restored), first_batch (the first patches arrived), and the first
step done (``startup_s``).

    python benchmarks/trial_startup.py [--trials 4] [--runners auto,trainer,two_workers]
"""

from __future__ import annotations

from raytrain import localray

localray.prefer_loopback()  # before Ray is imported: this benchmark's local Ray listens on 127.0.0.1 only

import argparse
import tempfile
import time

PHASES = ("mlflow", "images", "datasets", "loop", "nets", "first_batch")
TINY = ["method.depth=5", "method.width=16", "train.batch_size=8", "data.patches.size=32", "data.max_size=128",
        "data.val_crop=32", "data.val_images=1", "train.steps=6", "train.val_every=6", "train.checkpoint_every=6",
        "train.log_every=3"]  # fmt: skip


def sweep(runner: str, trials: int, workdir: str) -> list[dict]:
    from raytrain.config import load_config
    from raytrain.tune.driver import run_sweep
    from raytrain.tune.space import parse_space

    workers = 2 if runner == "two_workers" else 1
    mode = "trainer" if runner == "trainer" else "auto"
    cfg = load_config(None, [f"workdir={workdir}/{runner}", *TINY, f"scaling.num_workers={workers}",
                             f"scaling.trial_runner={mode}", f"name=st-{runner}"])  # fmt: skip
    space = parse_space({"params": {"train.lr": {"loguniform": [1e-4, 1e-3]}}}, "bench")
    t0 = time.perf_counter()
    res = run_sweep(cfg, space, f"st-{runner}", trials, 1, ["val_psnr"], ["max"], search="random")
    print(f"[{runner}] {trials} trials in {time.perf_counter() - t0:.1f} s")
    return sorted(res.rows, key=lambda r: r["trial_id"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=4)
    ap.add_argument("--runners", default="auto,trainer,two_workers")
    a = ap.parse_args()
    from raytrain.tables import markdown_table

    body, means = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for runner in a.runners.split(","):
            rows = sweep(runner, a.trials, tmp)
            for i, r in enumerate(rows):
                body.append([runner, str(i + 1), *(f"{r.get(f'startup_{p}_s', float('nan')):.1f}" for p in PHASES),
                             f"{r['startup_s']:.1f}"])  # fmt: skip
            later = [r["startup_s"] for r in rows[1:]] or [rows[0]["startup_s"]]
            means[runner] = sum(later) / len(later)
    print("\nseconds from the trial's start to the end of each phase (the last column: the first step done)\n")
    print("\n".join(markdown_table(["runner", "trial", *PHASES, "first step"], body)))
    for runner, m in means.items():
        print(f"{runner}: mean start-up after the first trial {m:.1f} s" + (
            f" (target <= 5 s: {'met' if m <= 5 else 'missed'})" if runner != "two_workers" else ""))  # fmt: skip


if __name__ == "__main__":
    main()
