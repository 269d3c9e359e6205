"""The one training loop that runs every method: :func:`run_loop`, on a Ray Train worker
(:func:`train_loop_per_worker`) or inside a one-worker Tune trial.

Its Ray touch points are the five calls of a session (raytrain/train/session.py): rank / world / device / DDP
``prepare``, ``shard`` (this worker's slice of each domain's patch stream), ``checkpoint`` (resume after a failure or
a re-run), ``report`` (metrics + checkpoint, a collective: every rank calls it at the same steps).
"""

from __future__ import annotations

import json
import logging
import random
import tempfile
import time
from collections import defaultdict

import numpy as np
import ray
import torch
import torch.distributed as dist

from raytrain.config import RunConfig
from raytrain.errors import RaytrainError, TrainingDiverged
from raytrain.evaluate import image_grid
from raytrain.layout import to_image, to_tensor
from raytrain.methods import build_method
from raytrain.methods.base import Method
from raytrain.methods.collective import unwrap
from raytrain.train import checkpoint as ckpt
from raytrain.train.draw import PatchBuffer, batch_stream, draw_batches
from raytrain.train.progress import BoardWriter


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resume(method: Method, cfg: RunConfig, rank: int, checkpoint) -> int:
    """Restore from Ray's ``checkpoint`` (after a failure or re-run) or ``train.resume_from``; return the step done."""
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            return _restore_from(method, d, rank)
    if cfg.train.resume_from:
        return _restore_from(method, cfg.train.resume_from, rank)
    return 0


def check_state(method: Method, state: dict, directory) -> None:
    """Load a full training ``state`` into ``method``; another method's checkpoint or weights that do not fit the
    config are one line naming ``directory``."""
    if state["method"] != method.name:
        raise RaytrainError(f"{directory}: checkpoint of method {state['method']!r}, this run is {method.name!r}")
    try:
        method.load_state_dict(state)
    except RaytrainError as exc:
        raise RaytrainError(f"{directory}: {exc}") from None


def _restore_from(method: Method, directory, rank: int) -> int:
    state = ckpt.load_state(directory)
    check_state(method, state, directory)
    rng = ckpt.load_rank_rng(directory, rank) if rank else state["rng"]
    if rng is not None:
        ckpt.restore_rng(rng)
    return int(state["step"])


def validate(method: Method, val: list, rank: int, world: int, device: torch.device) -> dict[str, float]:
    """The method's per-image validation values (:attr:`Method.val_keys`) on the validation pairs, sharded over
    ranks and summed with an all-reduce; reported as means ``val_<key>``. Buffers are averaged first (a collective)."""
    method.sync_buffers()
    method.train(False)
    method.before_validation()
    rows = method.evaluate(val[rank::world], device)
    method.train(True)
    keys = method.val_keys
    # on the worker's device: NCCL all-reduces only CUDA tensors
    sums = torch.tensor([[sum(r[k] for r in rows) for k in keys] + [len(rows)]], dtype=torch.float64, device=device)
    if world > 1 and dist.is_initialized():
        dist.all_reduce(sums)
    n = max(sums[0, -1].item(), 1.0)
    return {f"val_{k}": sums[0, i].item() / n for i, k in enumerate(keys)} | method.state_summary()


def _finite_params(method: Method) -> bool:
    return all(torch.isfinite(p).all() for net in method.nets.values() for p in net.parameters())


class _DropReportLines(logging.Filter):
    """Ray 2.60 logs every ``ray.train.report`` at INFO ("Reporting training result N: ...") through a logger named
    after its own file, outside the ``ray.train`` logger that ``LoggingConfig`` filters; the progress bar and MLflow
    already carry those numbers. A standard ``logging.Filter`` on the worker's root handlers drops just those lines
    (no Ray internals imported)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno == logging.INFO and str(record.msg).startswith("Reporting training result"))


def _quiet_report_log() -> None:
    drop = _DropReportLines()
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _DropReportLines) for f in handler.filters):
            handler.addFilter(drop)


def fast_path(cfg: RunConfig, device: torch.device) -> None:
    """Process-wide settings for speed: cuDNN picks its fastest kernels for the fixed patch size; TF32 matmuls on
    GPUs that have them (fp32 runs only; autocast decides for bf16 / fp16)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = cfg.train.precision == "fp32"


def channels_last_(net: torch.nn.Module) -> None:
    """The 4-D weights and buffers of ``net`` in channels-last memory, in place (the same Parameter objects, so the
    optimisers keep them). ``Module.to(memory_format=...)`` would also take 5-D tensors (SeNM-VAE's colour filters
    of z_n), which channels-last cannot lay out."""
    for mod in net.modules():
        for p in mod.parameters(recurse=False):
            if p.dim() == 4:
                p.data = p.data.contiguous(memory_format=torch.channels_last)
        for name, b in mod.named_buffers(recurse=False):
            if b is not None and b.dim() == 4:
                setattr(mod, name, b.contiguous(memory_format=torch.channels_last))  # a buffer stays a buffer


def fast_nets(cfg: RunConfig, method: Method) -> None:
    """``train.channels_last``: every net's weights in channels-last memory; ``train.compile``: every net compiled in
    place (``nn.Module.compile``: the module under a DDP wrapper, so state-dict keys and checkpoints are unchanged)."""
    for net in method.nets.values():
        if cfg.train.channels_last:
            channels_last_(net)
        if cfg.train.compile:
            unwrap(net).compile()


def train_loop_per_worker(config: dict) -> dict | None:
    """The ``TorchTrainer`` entry point: :func:`run_loop` on this Ray Train worker. Returns ``{DIVERGED: message}``
    when training diverged (rank 0's return value is the ``Result``'s ``return_value``)."""
    from raytrain.train.session import TrainSession

    _quiet_report_log()
    try:
        run_loop(config, TrainSession())
    except TrainingDiverged as exc:
        # Every rank stops at the same step (the skip and finiteness decisions are collectives), and a restart would
        # replay the same steps from the last checkpoint into the same divergence: the verdict goes to the driver as
        # the workers' return value (launch.raise_diverged raises it there), not as a worker failure that Ray would
        # spend a restart of scaling.max_failures on.
        return {DIVERGED: str(exc)}
    return None


DIVERGED = "raytrain_diverged"  # the key of the workers' return value that carries a divergence to the driver


def run_loop(config: dict, session) -> None:
    """Train ``config["run"]`` (a RunConfig as JSON-able dict) where ``session`` says (raytrain/train/session.py)."""
    marks = {**config.get("marks", {}), "loop": time.time()}
    cfg = RunConfig.model_validate(config["run"])
    rank, device = session.rank, session.device
    seed_everything(cfg.seed * 1009 + rank)
    if device.type == "cpu":  # one intra-op thread per CPU Ray reserved for this worker
        torch.set_num_threads(max(1, int(cfg.scaling.cpus_per_worker)))
    fast_path(cfg, device)
    method = build_method(cfg, device, prepare=session.prepare)
    fast_nets(cfg, method)
    checkpoint = session.checkpoint()  # read once: later it returns what this attempt itself reported
    start = resume(method, cfg, rank, checkpoint)
    marks["nets"] = time.time()
    logger = None
    if rank == 0 and config.get("tracking"):
        from raytrain.tracking import WorkerLogger

        logger = WorkerLogger(config["tracking"])
    counter = config.get("pass_counter")
    streams = {d: batch_stream(session.shard(d), d, cfg, device, counter, rank) for d in method.domains}
    bar = None
    board = config.get("progress_board")  # the driver draws it (raytrain.train.progress); none for Tune trials
    if rank == 0 and board is not None:
        bar = BoardWriter(board, cfg.train.steps, f"{cfg.name} ({cfg.method.name})")
        bar.update(start)
    loop = Loop(cfg, method, streams, ray.get(config["val_ref"]), session, logger, bar, json.dumps(config["run"]),
                first_attempt=checkpoint is None)  # fmt: skip
    loop.started_at = config.get("started_at") if checkpoint is None and start == 0 else None
    loop.marks = marks
    loop.run(start)


class Loop:
    """Step, guard, log, validate, checkpoint. One instance per worker."""

    def __init__(self, cfg, method, streams, val, session, logger, bar, config_json, first_attempt=True):
        self.cfg, self.method, self.val, self.session = cfg, method, val, session
        self.buffers = {d: PatchBuffer(s) for d, s in streams.items()}
        self.rank, self.world, self.device = session.rank, session.world, session.device
        self.logger, self.bar = logger, bar
        self.config_json = config_json
        self.sums: dict[str, float] = defaultdict(float)
        self.count = 0
        self.bad_in_row = 0
        self.bad_total = 0
        self.best: float | None = None  # best headline validation value so far (Method.headline)
        self.first_attempt = first_attempt  # for train.fail_at_step: fire only in an attempt Ray did not restore
        self.started_at: float | None = None  # wall time (time.time) when the driver launched the run
        self.startup_s: float | None = None
        self.marks: dict[str, float] = {}  # when each start-up phase ended (time.time), see run_loop
        self.startup: dict[str, float] = {}  # startup_<phase>_s: seconds from launch, with every validation

    def run(self, start: int) -> None:
        tc = self.cfg.train
        self.method.train(True)
        t0, samples = time.perf_counter(), 0
        self.t_mark, self.steps_since, self.draw_s = t0, 0, 0.0
        for step in range(start + 1, tc.steps + 1):
            t_draw = time.perf_counter()
            batches = draw_batches(self.method, self.cfg, self.buffers, step)
            self.draw_s += time.perf_counter() - t_draw
            if self.startup_s is None:
                self.marks["first_batch"] = time.time()
            with self.method.precision.autocast():  # train.precision (backward passes run outside it)
                out = self.method.train_step(batches, step)
            self.method.end_step()
            self.method.update_ema()
            self._guard(out, step)
            if self.startup_s is None and self.started_at is not None:
                self.startup_s = time.time() - self.started_at  # launch (driver) -> first finished step
                self.startup = {f"startup_{k}_s": t - self.started_at for k, t in self.marks.items()}
            samples += sum(next(iter(b.values())).shape[0] for b in batches.values()) * self.world
            if tc.fail_at_step == step and self.rank == 0 and self.first_attempt:
                raise RuntimeError(f"injected failure at step {step} (train.fail_at_step)")
            self.steps_since += 1
            if self.bar is not None:
                self.bar.update(1)
            last = step == tc.steps or self._budget_spent(t0)
            if step % tc.log_every and step % tc.val_every and step % tc.checkpoint_every and not last:
                continue
            metrics = self._train_metrics(step, start, samples / (time.perf_counter() - t0))
            want_ckpt = step % tc.checkpoint_every == 0 or last
            # train.keep_best ranks checkpoints by a validation metric: every checkpoint step validates
            if step % tc.val_every == 0 or last or (want_ckpt and tc.keep_best != "last"):
                metrics |= self._validate(step) | self.startup
            self._report(metrics, step, want_ckpt)
            self.t_mark, self.steps_since, self.draw_s = time.perf_counter(), 0, 0.0  # step_time_s: steps only
            if last:
                break
        if self.bar is not None:
            self.bar.close()

    def _budget_spent(self, t0: float) -> bool:
        """``train.max_minutes`` elapsed on any rank (all ranks agree, so the report collective stays in step)."""
        if self.cfg.train.max_minutes is None:
            return False
        spent = torch.tensor([float(time.perf_counter() - t0 > 60 * self.cfg.train.max_minutes)], device=self.device)
        if self.world > 1 and dist.is_initialized():
            dist.all_reduce(spent, op=dist.ReduceOp.MAX)
        return bool(spent.item())

    def _guard(self, out, step: int) -> None:
        if not out.skipped:
            self.bad_in_row = 0
            for k, v in out.losses.items():
                self.sums[k] += v
            self.count += 1
            return
        self.bad_in_row += 1
        self.bad_total += 1
        if self.bad_in_row >= self.cfg.train.max_bad_steps:
            shown = ", ".join(f"{k}={v:.3g}" for k, v in out.losses.items())
            raise TrainingDiverged(
                f"loss was NaN/Inf (or over train.grad_skip) for {self.bad_in_row} steps in a row up to step {step} "
                f"({shown}); lower train.lr or set train.grad_clip"
            )

    def _train_metrics(self, step: int, start: int, samples_per_s: float) -> dict[str, float]:
        m = {f"train_{k}": v / max(self.count, 1) for k, v in self.sums.items()}
        self.sums.clear()
        self.count = 0
        now = time.perf_counter()
        m["step_time_s"] = (now - self.t_mark) / max(self.steps_since, 1)  # training steps only, see run()
        m["data_wait_s"] = self.draw_s / max(self.steps_since, 1)  # of which waiting for this step's patches
        pulled = sum(b.pulled for b in self.buffers.values())
        used = sum(b.used for b in self.buffers.values())  # patches the steps used / the streams delivered so far
        return m | self.method.lrs() | {
            "step": step, "start_step": start, "skipped_steps": self.bad_total, "samples_per_s": samples_per_s,
            "patches_used_fraction": used / max(pulled, 1),
        } | ({"startup_s": self.startup_s} if self.startup_s is not None else {})  # fmt: skip

    def _validate(self, step: int) -> dict[str, float]:
        with self.method.averaged():  # train.ema: the averaged weights are the ones validated (and exported)
            return self._validate_now(step)

    def _validate_now(self, step: int) -> dict[str, float]:
        m = validate(self.method, self.val, self.rank, self.world, self.device)
        key, _, better = self.method.headline
        now = m[f"val_{key}"]
        pick = max if better == "max" else min
        self.best = now if self.best is None else pick(self.best, now)
        m[f"val_best_{key}"] = self.best
        if self.logger is not None and self.cfg.tracking.image_every_val and self.val:
            clean, noisy = self.val[0]
            self.method.train(False)
            cols = self.method.preview(to_tensor(clean, self.device), to_tensor(noisy, self.device))
            self.method.train(True)
            arrays = [to_image(c.clamp(0, 1)) for c in cols]
            self.logger.log_image(image_grid(arrays), f"val_step{step:07d}.png")
        return m

    def _report(self, metrics: dict[str, float], step: int, want_ckpt: bool) -> None:
        if self.logger is not None:
            self.logger.log_metrics({k: v for k, v in metrics.items() if k != "step"}, step)
        key, label, _ = self.method.headline
        if self.bar is not None and f"val_{key}" in metrics:
            self.bar.set_description(f"{self.cfg.name} val {label.format(metrics[f'val_{key}'])}")
        if not want_ckpt:
            # Ray sees validations (Tune searches on them) and checkpoints; a loss-only step goes to MLflow alone: in
            # Train V2 a report waits until the controller takes the one before it, one per health-check poll
            # (RAY_TRAIN_HEALTH_CHECK_INTERVAL_S, 2 s by default), which throttled short steps to 2 s per log step
            if any(k.startswith("val_") for k in metrics):
                self.session.report(metrics)  # Ray: a collective; every rank reports at the same steps
            return
        self.method.sync_buffers()  # every rank the same model, the one rank 0 saves
        if not _finite_params(self.method):  # never replace a good checkpoint with a broken one
            raise TrainingDiverged(f"parameters became NaN/Inf by step {step}; the last good checkpoint is kept")
        with tempfile.TemporaryDirectory() as tmp:
            if self.rank == 0:
                ckpt.save_checkpoint(tmp, self.method, step, self.config_json, metrics)
            else:
                ckpt.save_rank_rng(tmp, self.rank)
            self.session.report(metrics, tmp)  # Ray: every rank's files merge into one checkpoint directory
