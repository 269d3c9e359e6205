"""Time per training step of the Ray Train loop against a plain single-process PyTorch loop, in one run.

Both train the same DnCNN at the same batch size with the same number of CPU threads. The Ray side is a 1-worker
``TorchTrainer`` (Ray Data patch stream, NaN guard, periodic reports) whose loop reports ``step_time_s``
(training steps only, validation and checkpoints excluded); the plain side is a ``for`` loop over in-memory
tensors. Target: ratio <= 1.05. ``--repeats`` (3) Ray runs and plain loops alternate (this machine's speed drifts by
+-10 % over minutes, more than the overhead measured); the figure is the median of the repeats' ratios. The Ray
loop's ``data_wait_s`` (the part of a step spent waiting for its patches) is printed beside it.

    python benchmarks/loop_overhead.py [--steps 60] [--depth 17] [--width 64] [--batch 16] [--threads 2]
    python benchmarks/loop_overhead.py --method lir --steps 6 --log-every 2 --set method.scm_backbone=random
    python benchmarks/loop_overhead.py --minutes 2   # a run sized by a time budget (train.steps 1e6, max_minutes)
    python benchmarks/loop_overhead.py --config configs/lir_awgn_blind.yaml --in-trainer --cpu-shares-after 40

``--config`` starts from a run config (its method and widths: the CPU recipes). ``--in-trainer`` also times the
plain loop inside a one-worker ``TorchTrainer``'s training thread (Ray Train's own cost, without the loop's data
stream). ``--cpu-shares-after S`` prints each process's share of the machine's CPU during the Ray run from S seconds
in (where the cores go while the loop trains: the worker, Ray Data's executor and actors, Ray's daemons).

``--minutes M`` declares the Ray run as ``train.steps=1000000`` stopped by ``train.max_minutes=M``, as the demo and
``lir_quality.py`` run: the patch streams are then as long as a long run's (the case where one endless pass kept
Ray Data's executor spinning beside training).
"""

from __future__ import annotations

from raytrain import localray

localray.prefer_loopback()  # before Ray is imported: this benchmark's local Ray listens on 127.0.0.1 only

import argparse
import itertools
import os
import statistics
import tempfile
import time
from functools import partial

import ray
import torch

from raytrain.config import load_config
from raytrain.methods import build_method
from raytrain.train.launch import DATA_CPUS_PER_RUN, run_training


def fake_batch(domains: tuple[str, ...], n: int, c: int, s: int) -> dict:
    keys = {"paired": ("clean", "noisy"), "source": ("clean",), "target": ("noisy",)}
    return {d: {k: torch.rand(n, c, s, s) for k in keys[d]} for d in domains}


def plain_step_time(cfg, steps: int, threads: int, first: int | None = None) -> float:
    """Seconds per step of a plain loop over in-memory batches, each step drawing what the Ray loop's step draws
    (the loop's own ``draw_batches``: one domain per step for SeNM-VAE's ``domain_sampling: batch``, all for LIR).
    ``first``: time steps ``first .. first + steps - 1`` (the ones the Ray run's figure covers: a method whose
    domains cost differently per step, SeNM-VAE's, must be timed on the same draws), the steps before as warm-up."""
    from raytrain.train.draw import PatchBuffer, draw_batches

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    method = build_method(cfg, torch.device("cpu"))
    c = 1 if cfg.data.color == "gray" else 3
    batches = [fake_batch(method.domains, cfg.train.batch_size, c, cfg.data.patches.size) for _ in range(4)]

    def stream(domain: str):
        for i in itertools.count():
            yield batches[i % 4][domain]

    buffers = {d: PatchBuffer(stream(d)) for d in method.domains}
    warm = min(3, max(1, steps // 3)) if first is None else first - 1
    for step in range(1, warm + 1):
        method.train_step(draw_batches(method, cfg, buffers, step), step)
    t0 = time.perf_counter()
    for step in range(warm + 1, warm + steps + 1):
        method.train_step(draw_batches(method, cfg, buffers, step), step)
        method.end_step()
    return (time.perf_counter() - t0) / steps


def process_cpu() -> dict[int, tuple[str, float]]:
    """CPU seconds so far of every process on this machine, with its name (Ray workers by their actor / task)."""
    hz, out = os.sysconf("SC_CLK_TCK"), {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
            with open(f"/proc/{pid}/cmdline") as f:
                cmd = f.read().replace("\0", " ").split()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        name = cmd[0] if cmd and cmd[0].startswith("ray::") else os.path.basename(cmd[0]) if cmd else "?"
        if name.startswith("python") and len(cmd) > 1:
            name = f"python {os.path.basename(cmd[1])}"
        out[int(pid)] = (name, (int(fields[11]) + int(fields[12])) / hz)
    return out


def cpu_shares(fn, after_s: float):
    """Run ``fn``; print each process's share of the machine's CPU from ``after_s`` seconds in until ``fn`` returns
    (the steady state of a run: start-up excluded). Sampled every second, so processes that end before ``fn``
    returns (the run's workers) count up to their last sample. Linux /proc only."""
    import threading

    first: dict = {}
    last: dict = {}
    done = threading.Event()

    def sample() -> None:
        if done.wait(after_s):
            return
        first.update(process_cpu())
        first["t"] = last["t"] = time.perf_counter()
        while not done.wait(1.0):
            last.update(process_cpu())
            last["t"] = time.perf_counter()

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out = fn()
    done.set()
    sampler.join()
    if "t" not in first or last["t"] == first["t"]:
        print(f"CPU shares: the run ended before {after_s:g} s (lower --cpu-shares-after)")
        return out
    wall = last.pop("t") - first.pop("t")
    used: dict[str, float] = {}
    for pid, (name, cpu) in last.items():
        used[name] = used.get(name, 0.0) + cpu - (first[pid][1] if pid in first and first[pid][0] == name else 0.0)
    cores = os.cpu_count() or 1
    print(f"CPU shares of the {cores} cores over {wall:.0f} s of the Ray run (from {after_s:g} s in):")
    for name, cpu in sorted(used.items(), key=lambda kv: -kv[1])[:16]:
        if cpu / (wall * cores) >= 0.002:
            print(f"  {100 * cpu / (wall * cores):5.1f} %  {name}")
    return out


def in_trainer_step_time(cfg, steps: int, threads: int, first: int | None = None) -> float:
    """The plain loop (in-memory batches) in a one-worker TorchTrainer's training thread: Ray Train's own cost
    (``steps`` from ``first``, as :func:`plain_step_time`)."""
    import ray.train
    import ray.train.torch

    def fn(config: dict) -> None:
        torch.set_num_threads(threads)
        t = plain_step_time(config["cfg"], steps, threads, first)
        ray.train.report({"t": t}, checkpoint=ray.train.Checkpoint.from_directory(tempfile.mkdtemp()))

    trainer = ray.train.torch.TorchTrainer(
        fn, train_loop_config={"cfg": cfg},
        scaling_config=ray.train.ScalingConfig(num_workers=1, resources_per_worker={"CPU": threads}),
        run_config=ray.train.RunConfig(storage_path=tempfile.mkdtemp(prefix="raytrain-bench-")),
    )  # fmt: skip
    return trainer.fit().metrics["t"]


def ray_step_time(cfg) -> tuple[float, float, int, int]:
    """(seconds per step, of which waiting for data, first step, steps) of the Ray run after its first report
    interval (which holds the start-up): the intervals' figures weighted by their steps."""
    res = run_training(cfg)
    rows = [(r["step"], r["step_time_s"], r["data_wait_s"]) for r in res.history if r.get("step_time_s")]
    if len(rows) < 2:
        raise SystemExit("the Ray run reported fewer than 2 intervals: raise --steps or lower --log-every")
    pairs = list(zip(rows, rows[1:], strict=False))
    n = rows[-1][0] - rows[0][0]
    total = sum((now[0] - prev[0]) * now[1] for prev, now in pairs)
    wait = sum((now[0] - prev[0]) * now[2] for prev, now in pairs)
    return total / n, wait / n, rows[0][0] + 1, n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--depth", type=int, default=17)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--method", default="dncnn")
    ap.add_argument(
        "--config",
        default=None,
        help="a run config to start from (its method and widths), e.g. "
        "configs/lir_awgn_blind.yaml or configs/senm_pipeline.yaml (the CPU recipes)",
    )
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--minutes", type=float, default=None, help="size the Ray run as 1e6 steps stopped after M minutes")
    ap.add_argument("--in-trainer", action="store_true", help="also time the plain loop in a TorchTrainer worker")
    ap.add_argument("--cpu-shares-after", type=float, default=None, help="print CPU shares from S s into the Ray run")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved Ray / plain repeats (median ratio)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="extra config overrides")
    a = ap.parse_args()
    if a.config:
        a.method = load_config(a.config, []).method.name
    sizes = [f"method.depth={a.depth}", f"method.width={a.width}"] if a.method == "dncnn" and not a.config else []
    work = tempfile.mkdtemp(prefix="raytrain-bench-")
    split = [] if a.config else [f"data.split={'two_domain' if a.method == 'lir' else 'semi'}"]
    method = [] if a.config else [f"method.name={a.method}"]
    n = a.steps if a.minutes is None else 1_000_000
    budget = [] if a.minutes is None else [f"train.max_minutes={a.minutes}"]
    cfg = load_config(a.config, [
        f"workdir={work}", "name=overhead", *method, *sizes, *split,
        f"train.batch_size={a.batch}", f"train.steps={n}", f"train.log_every={a.log_every}", *budget,
        # a checkpoint per report interval, all kept: Ray 2.60's run history holds only the kept checkpoints'
        # reports, and step_time_s leaves the checkpoint's time out, so every interval's step time reaches
        # ray_step_time
        f"train.val_every={n}", f"train.checkpoint_every={a.log_every}", f"train.keep_checkpoints={n}",
        "scaling.num_workers=1",
        f"scaling.cpus_per_worker={a.threads}",
        "data.resample_noise=true", "data.max_size=256", "tracking.enabled=false", "data.val_crop=32", *a.overrides,
    ])  # fmt: skip
    label = (
        f"{'DnCNN-' + str(a.depth) + 'x' + str(a.width) if a.method == 'dncnn' and not a.config else a.method}"
        f"{' (' + a.config + ')' if a.config else ''}, batch {a.batch}, "
        f"{cfg.data.patches.size}px, {a.threads} threads, {a.steps} steps"
    )
    print(label)
    # the Ray run's figure covers the steps after its first report interval (start-up): the plain loop times the
    # same steps' draws; a run stopped by --minutes says its steps only when it ends, so there the Ray run goes first
    first, count = a.log_every + 1, n - a.log_every
    ratios, rows = [], []
    for rep in range(a.repeats):
        # interleaved, the order alternating: this machine's speed drifts by +-10 % over minutes, so a Ray run and
        # a plain loop timed minutes apart differ by more than the overhead measured; the median of the repeats'
        # ratios is the figure
        order = ("ray", "plain") if rep % 2 == 0 or a.minutes is not None else ("plain", "ray")
        got: dict[str, float] = {}
        for which in order:
            if which == "plain":
                got["plain"] = plain_step_time(cfg, count, a.threads, first)
                continue
            # one logical CPU per patch dataset beside the worker, as raytrain's own embedded Ray
            # (launch.DATA_CPUS_PER_RUN): with one spare CPU, Ray Data gives LIR's second domain 0 CPUs
            ray.init(num_cpus=a.threads + DATA_CPUS_PER_RUN, include_dashboard=False, log_to_driver=False)
            shares = a.cpu_shares_after is not None and rep == 0
            run = cfg.model_copy(update={"workdir": tempfile.mkdtemp(prefix="raytrain-bench-")})  # not a resume
            timed = cpu_shares(partial(ray_step_time, run), a.cpu_shares_after) if shares else ray_step_time(run)
            got["ray"], got["wait"], first, count = timed
            if a.in_trainer:  # the plain loop on the same steps inside a TorchTrainer worker (Ray's processes up)
                got["trainer"] = in_trainer_step_time(cfg, count, a.threads, first)
            ray.shutdown()  # the plain loop runs without Ray's processes, as plain PyTorch does
        ratios.append(got["ray"] / got["plain"])
        rows.append(got)
        trainer = f", in a TorchTrainer worker {got['trainer'] * 1000:.1f} ms" if "trainer" in got else ""
        print(f"repeat {rep + 1}/{a.repeats} ({' then '.join(order)}): plain {got['plain'] * 1000:.1f} ms/step, "
              f"Ray {got['ray'] * 1000:.1f} ms/step (waiting for patches {got['wait'] * 1000:.1f}){trainer}: "
              f"ratio {ratios[-1]:.3f}", flush=True)  # fmt: skip
    med = statistics.median
    plain_t, ray_t, wait_t = (med(r[k] for r in rows) for k in ("plain", "ray", "wait"))
    print(label)
    print(f"plain PyTorch loop: {plain_t * 1000:8.1f} ms/step (median of {a.repeats})")
    sized = f", sized as 1e6 steps, {a.minutes:g} min" if a.minutes is not None else ""
    print(f"Ray Train loop:     {ray_t * 1000:8.1f} ms/step (1 worker, Ray Data stream, steps {first}-"
          f"{first + count - 1}{sized}; the plain loop timed on the same steps' draws)")  # fmt: skip
    print(f"  of which waiting for patches: {wait_t * 1000:8.1f} ms/step")
    if a.in_trainer:
        trainer_t = med(r["trainer"] for r in rows)
        print(f"plain loop in a TorchTrainer worker: {trainer_t * 1000:8.1f} ms/step (in-memory batches): "
              f"{trainer_t / plain_t:.3f} of the plain loop")  # fmt: skip
    spread = f" (repeats {min(ratios):.3f}-{max(ratios):.3f})" if len(ratios) > 1 else ""
    print(f"ratio ray/plain: {med(ratios):.3f}{spread} (target <= 1.05)")


if __name__ == "__main__":
    main()
