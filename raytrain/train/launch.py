"""The driver: connect to Ray, load and split the data, open the MLflow run, build the ``TorchTrainer``, fit.

Train V2 notes: a run re-launched with the same ``name`` and ``storage_path`` resumes from its latest checkpoint
(Ray restores it and the loop reads it with ``get_checkpoint``); ``train.resume_from`` starts a new run from any
checkpoint directory (V2 has no ``resume_from_checkpoint`` argument). The checkpoint a run returns is a location
(:mod:`raytrain.locations`: a local folder or a URI of the storage), read by every later stage through it.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import ray
import ray.train
from ray.train.torch import TorchTrainer

from raytrain import localray
from raytrain.config import RunConfig, check_weight_files, flatten, to_raw, validate
from raytrain.console import ray_init_kwargs
from raytrain.data.collection import Collection, load_domains
from raytrain.data.pipeline import PassCounter, build_datasets
from raytrain.errors import RaytrainError, TrainingDiverged, first_line
from raytrain.methods import method_class
from raytrain.train.backend import torch_config
from raytrain.train.loop import DIVERGED, train_loop_per_worker
from raytrain.train.preflight import check_compile, check_data_sources, check_rerun, check_resume, storage_path
from raytrain.train.progress import DriverProgress, ProgressBoard
from raytrain.train.records import checkpoint_config, picked, record_checkpoint

if TYPE_CHECKING:
    from raytrain.tracking import Store


@dataclass
class TrainResult:
    """What a finished run produced, for the CLI's summary and for tests."""

    metrics: dict
    checkpoint: str | None
    run_id: str | None
    storage: str
    history: list[dict]
    last_checkpoint: str | None = None  # the newest (``checkpoint`` is the one train.keep_best picks)
    pick: str = ""  # how ``checkpoint`` was picked, e.g. "best val_kld 0.029 at step 250"


TRIAL_SLOT = "trial_slot"
HEALTH_CHECK_S = 0.25
DATA_CPUS_PER_RUN = 3  # logical CPUs for Ray Data per training run: one per patch dataset (SeNM-VAE streams 3)


def connect(address: str | None, cfg: RunConfig, trials: int = 1) -> None:
    """``ray.init`` once: the given cluster, or an embedded local one sized so Ray Data can run beside the workers."""
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    # Train V2's controller takes one report per poll of its workers; at its default 2 s a validation or checkpoint
    # report waits up to 2 s. The embedded Ray's processes inherit this; a cluster's are set where it is started.
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", str(HEALTH_CHECK_S))
    if address:
        try:
            ray.init(address=address, **ray_init_kwargs())
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise RaytrainError(f"cannot connect to the Ray cluster at {address}: {first_line(exc)}") from None
    else:
        # One machine has no spot preemption to watch for: Train V2's preemption watcher is one more actor process per
        # run (~1.4 CPU-s of start-up on 2 cores); not on the embedded Ray, whose processes inherit this.
        os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
        need = trials * (cfg.scaling.num_workers * cfg.scaling.cpus_per_worker + DATA_CPUS_PER_RUN)
        # Logical CPUs: the workers' share plus one per patch dataset (a method streams up to 3 domains) for Ray
        # Data's crop tasks, even on a 2-core machine. Ray Data hands each running dataset an integer share of the
        # CPUs the workers leave (leftover // datasets): with one spare CPU and 3 datasets, two got 0, never ran a
        # task and their coordinators spun at ~50% of a core each, halving a SeNM-VAE run's speed.
        # The dashboard (on 127.0.0.1 only) serves the State API that Ray Train's placement-group cleaner polls;
        # without it that actor warns every few seconds. It also shows the run at http://127.0.0.1:8265.
        # trial_slot: what a Tune trial (a driver of a TorchTrainer, no compute of its own) holds; see tune/driver.py
        # On loopback only (see raytrain/localray.py).
        localray.start(max(os.cpu_count() or 1, int(need + 0.999)), {TRIAL_SLOT: 1024})
    exit_on_sigterm()


def check_local_cpus(cfg: RunConfig, trials: int = 1) -> None:
    """The embedded local Ray gets logical CPUs for Ray Data beyond the cores, never for the workers: a worker group
    larger than this machine's cores is refused here (one line naming both figures) instead of oversubscribed."""
    s, cores = cfg.scaling, os.cpu_count() or 1
    want = trials * s.num_workers * s.cpus_per_worker
    if want > cores:
        what = f"{trials} concurrent trials x {s.num_workers} workers" if trials > 1 else f"{s.num_workers} workers"
        fix = (
            "lower --concurrent, scaling.num_workers or scaling.cpus_per_worker"
            if trials > 1
            else "lower scaling.num_workers or scaling.cpus_per_worker"
        )
        raise RaytrainError(f"{what} x {s.cpus_per_worker:g} CPUs = {want:g} CPUs, this machine has {cores} "
                            f"(the embedded local Ray); {fix}, or give --address of a cluster")  # fmt: skip


def exit_on_sigterm() -> None:
    """SIGTERM (``kill``, a scheduler) handled as Ctrl-C: Ray Train aborts the run, the MLflow run is marked KILLED
    and the embedded Ray is shut down instead of orphaned. Installed after ``ray.init``, whose own handler aborts."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.default_int_handler)


def data_cpus(cfg: RunConfig) -> int:
    """CPUs Ray Data's crop tasks need beside a run's worker group: one per patch stream (domain). Ray Data hands
    each running dataset an integer share of the CPUs the workers leave; a stream with none never runs a task."""
    return len(method_class(cfg.method.name).domains_for(cfg))


def check_resources(cfg: RunConfig, trials: int = 1, extra_cpu: float = 0.0) -> None:
    """Say so (instead of hanging) when the cluster cannot place the worker group (``trials`` of them at once) and
    the CPUs its patch streams need beside it; ``scaling.wait_for_nodes_s`` waits for nodes first."""
    from raytrain.train.cluster import wait_for

    s = cfg.scaling
    n = trials * s.num_workers
    group = {"CPU": n * s.cpus_per_worker + extra_cpu}
    if s.use_gpu:
        group["GPU"] = n * s.resources_per_worker.get("GPU", 1.0)
    for k, v in s.resources_per_worker.items():
        if k not in ("CPU", "GPU"):
            group[k] = n * v
    streams = trials * data_cpus(cfg)
    total = wait_for({**group, "CPU": group["CPU"] + streams}, s.wait_for_nodes_s)
    what = f"{trials} concurrent trials x {s.num_workers} workers" if trials > 1 else f"{s.num_workers} workers"
    short = {k: (v, total.get(k, 0.0)) for k, v in group.items() if total.get(k, 0.0) < v}
    if short:
        desc = ", ".join(f"{k}: need {v:g}, cluster has {have:g}" for k, (v, have) in short.items())
        fix = "lower --concurrent or scaling.num_workers" if trials > 1 else "lower scaling.num_workers"
        raise RaytrainError(f"the cluster cannot place {what} ({desc}); {fix}")
    left = total.get("CPU", 0.0) - group["CPU"]
    if left < streams:
        raise RaytrainError(
            f"the cluster has {total.get('CPU', 0.0):g} CPUs: {what} x {s.cpus_per_worker:g} CPUs leave {left:g} for "
            f"Ray Data's {streams} patch stream(s), which need 1 each (with none the run would hang at step 0): "
            "lower scaling.cpus_per_worker or scaling.num_workers, add CPUs or nodes, or set "
            "scaling.wait_for_nodes_s for an autoscaler to add them"
        )  # fmt: skip


def scaling_config(cfg: RunConfig) -> ray.train.ScalingConfig:
    s = cfg.scaling
    res = {"CPU": s.cpus_per_worker, **s.resources_per_worker}
    if s.use_gpu:
        res.setdefault("GPU", 1.0)
    return ray.train.ScalingConfig(num_workers=s.num_workers, use_gpu=s.use_gpu, resources_per_worker=res)


def without_empty_domains(cfg: RunConfig, collection: Collection) -> RunConfig:
    """``cfg`` with ``data.mix`` 0 for the optional domains its split left empty (SeNM-VAE with
    ``paired.fraction: 1.0`` has no source or target images); the workers read the mix from the config they get."""
    empty = [d for d in method_class(cfg.method.name).optional_domains
             if cfg.data.mix.get(d, 0) > 0 and len(collection.domains[d]) == 0]  # fmt: skip
    if not empty:
        return cfg
    print(f"[raytrain] the split has no {' or '.join(empty)} images: training without "
          f"{'that domain' if len(empty) == 1 else 'those domains'} (data.mix set to 0)")  # fmt: skip
    raw = to_raw(cfg)
    raw["data"]["mix"] = {**cfg.data.mix, **dict.fromkeys(empty, 0.0)}
    return validate(raw, "config")


def prepare_run(cfg: RunConfig, collection: Collection, tracking: dict | None, board, started_at: float | None,
                marks: dict[str, float] | None = None) -> tuple[RunConfig, dict, dict]:  # fmt: skip
    """What a run's loop needs: the config it trains (empty optional domains off), its patch datasets and the loop's
    config (the run, validation pairs, pass counter, MLflow run, progress board, launch time, and ``marks``: when
    each start-up phase ended, reported with the first step as ``startup_<phase>_s``)."""
    cfg = without_empty_domains(cfg, collection)
    domains = method_class(cfg.method.name).domains_for(cfg)
    # the pass the streams are in (the workers set it, the crop tasks read it): the progress board where the run has
    # one (the same 0-CPU actor, one process fewer per run), else an actor of its own (a Tune trial)
    counter = board if board is not None else PassCounter.remote()
    datasets = build_datasets(cfg, collection, domains, cfg.scaling.num_workers, counter)
    loop_config = {
        "run": to_raw(cfg),
        "val_ref": ray.put(collection.val),
        "pass_counter": counter,
        "tracking": tracking,
        "progress_board": board,
        "started_at": started_at or time.time(),  # for startup_s: launch -> first training step
        "marks": {**(marks or {}), "datasets": time.time()},
    }
    return cfg, datasets, loop_config


def make_trainer(cfg: RunConfig, collection: Collection, tracking: dict | None, callbacks: list | None = None,
                 board=None, started_at: float | None = None, marks: dict | None = None) -> TorchTrainer:  # fmt: skip
    """``board``: a :class:`~raytrain.train.progress.ProgressBoard` rank 0 writes its progress to, for the driver to
    draw; None: no progress (Tune trials, whose status table Tune prints)."""
    cfg, datasets, loop_config = prepare_run(cfg, collection, tracking, board, started_at, marks)
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop_config,
        torch_config=torch_config(),  # on the embedded Ray: a process group that listens on loopback only
        scaling_config=scaling_config(cfg),
        run_config=ray.train.RunConfig(
            name=cfg.name,
            storage_path=storage_path(cfg),
            failure_config=ray.train.FailureConfig(max_failures=cfg.scaling.max_failures),
            checkpoint_config=checkpoint_config(cfg, ray.train.CheckpointConfig),
            logging_config=ray.train.LoggingConfig(log_level="WARNING"),  # our progress bar says what INFO would
            callbacks=callbacks or [],
        ),
        datasets=datasets,
        dataset_config=data_config(cfg.scaling.num_workers),
    )


def data_config(num_workers: int) -> ray.train.DataConfig:
    """Ray Data's hand-over to the workers: every domain's stream split across them (each gets a disjoint shard, a
    split coordinator actor per domain serves them); one worker gets the whole stream, executed in its own process
    as a one-worker Tune trial's is (no coordinator: a SeNM-VAE run starts three processes fewer, ~9 CPU-s)."""
    return ray.train.DataConfig(datasets_to_split="all" if num_workers > 1 else [])


def in_process(cfg: RunConfig) -> bool:
    """Whether a Tune trial of ``cfg`` trains in its own process (one worker, ``scaling.trial_runner: auto``)."""
    return cfg.scaling.num_workers == 1 and cfg.scaling.trial_runner == "auto"


def train_in_process(cfg: RunConfig, collection: Collection, tracking: dict | None, started_at: float,
                     marks: dict | None = None, board=None) -> None:  # fmt: skip
    """The one loop with one worker in this process (a Tune trial): no worker group, no process group; reports and
    checkpoints go to Tune (raytrain/train/session.py). ``board``: a progress board for the driver to draw."""
    from raytrain.train.loop import run_loop
    from raytrain.train.session import TrialSession

    cfg, datasets, loop_config = prepare_run(cfg, collection, tracking, board, started_at, marks)
    session = TrialSession(datasets, cfg.scaling.use_gpu)
    try:
        run_loop(loop_config, session)
    finally:
        session.close()


def train_trial(cfg: RunConfig, collection: Collection, tracking: dict | None, started_at: float,
                marks: dict | None = None, board=None) -> None:  # fmt: skip
    """A Tune trial's training (a sweep's, a pipeline stage's): in the trial's own process (one worker, see
    :func:`in_process`) or by a TorchTrainer whose validation reports go on to Tune."""
    if in_process(cfg):
        train_in_process(cfg, collection, tracking, started_at, marks, board)
        return
    from raytrain.tune.driver import ValidationReportCallback

    trainer = make_trainer(cfg, collection, tracking, [ValidationReportCallback()], board, started_at, marks)
    raise_diverged(trainer.fit())


def raise_diverged(result) -> None:
    """The workers' divergence verdict (their return value, ``loop.DIVERGED``) raised on the driver as
    TrainingDiverged: the run fails with its own line without Ray restarting it into the same divergence."""
    if message := (getattr(result, "return_value", None) or {}).get(DIVERGED):
        raise TrainingDiverged(message)


def error_chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and every error behind it (causes, contexts, Ray's ``cause`` and ``worker_failures``), outside in."""
    seen, todo, out = set(), [exc], []
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        out.append(e)
        nxt = [getattr(e, attr, None) for attr in ("cause", "__cause__", "__context__")]
        nxt += list((getattr(e, "worker_failures", None) or {}).values())
        todo.extend(n for n in reversed(nxt) if isinstance(n, BaseException))
    return out


_RAISED = re.compile(r"^raytrain\.errors\.(?P<cls>\w+): (?P<msg>.+)$", re.MULTILINE)


def root_cause(exc: BaseException) -> BaseException:
    """The innermost user-facing error of a Ray failure chain (TrainingFailedError -> worker error -> cause): a
    raytrain error in the chain, else one Ray passed on only as text (a Ray Data task's error reaches the Train
    worker as a ``UserCodeException`` whose message holds the task's traceback, e.g. a streamed image file that
    turns out corrupt, data/stored.py), else the innermost error."""
    from raytrain import errors

    chain = error_chain(exc)
    for e in chain:  # Ray's RayTaskError as a subclass of the error it carries: its text is a traceback, not a line
        if isinstance(e, RaytrainError) and not isinstance(e, ray.exceptions.RayError):
            return e
    for e in chain:
        m = _RAISED.search(str(e))
        cls = getattr(errors, m["cls"], None) if m else None
        if isinstance(cls, type) and issubclass(cls, RaytrainError):
            return cls(m["msg"].strip())
    return chain[-1]


def preflight(cfg: RunConfig) -> tuple[Store, list[dict], str | None]:
    """Every check a run makes before it reads its data: weight files, ``resume_from``, compile, a re-run, the local
    machine's cores, the tracking store; then Ray (connected) and what a cluster needs (tracking server, storage
    every node writes, the workers' files on every node, the worker group and the CPUs of its patch streams).
    Returns the MLflow store, the other nodes (none on one machine) and the re-run line (None: a new run)."""
    from raytrain.tracking import Store
    from raytrain.train.cluster import check_cluster

    check_weight_files(cfg)  # a missing VGG-19 / AlexNet file is one line here, not a traceback on every worker
    check_data_sources(cfg)
    check_resume(cfg)
    check_compile(cfg)
    rerun = check_rerun(cfg)
    if cfg.address is None:
        check_local_cpus(cfg)
    store = Store.of(cfg)  # an unreachable server is reported before anything starts
    connect(cfg.address, cfg)
    nodes = check_cluster(cfg, store.uri)
    check_resources(cfg)
    return store, nodes, rerun


def run_training(cfg: RunConfig, parent_run_id: str | None = None) -> TrainResult:
    """Train ``cfg`` end to end and return its final metrics and checkpoint location; raises RaytrainError on user
    errors. Everything a cluster needs (tracking server, shared storage, files every node reads, CPUs for the data
    beside the workers) is checked before any worker starts."""
    from raytrain.train.cluster import check_data

    store, nodes, rerun = preflight(cfg)
    collection = load_domains(cfg)
    check_data(collection, nodes)
    if rerun:
        print(rerun, flush=True)
    tags = {"method": cfg.method.name, "split_sizes": json.dumps(collection.split.sizes()),
            "val_images": ",".join(collection.val_names)}  # fmt: skip
    if getattr(cfg.method, "scm", False) and getattr(cfg.method, "scm_backbone", "") == "random":
        tags["warning"] = "SCM uses a RANDOM VGG-19 (method.scm_backbone=random): test/demo only"
    storage = storage_path(cfg)
    with store.run(cfg.name, parent_run_id, tags, flatten(cfg)) as run:  # ends FINISHED / FAILED / KILLED
        run.log_config(cfg)
        board = ProgressBoard.remote()
        budget = cfg.train.max_minutes * 60 if cfg.train.max_minutes else None
        result = fit(make_trainer(cfg, collection, run.info, board=board), board, budget)
        raise_diverged(result)  # the MLflow run ends FAILED
        history = result.metrics_dataframe.to_dict("records") if result.metrics_dataframe is not None else []
        checkpoint, last, how = picked(cfg, result, storage)
        if checkpoint is not None:
            record_checkpoint(run, checkpoint, last, how, cfg.tracking.register)
    return TrainResult(result.metrics or {}, checkpoint, run.run_id, storage, history, last, how)


def fit(trainer, board, budget_s: float | None = None):
    """``trainer.fit()`` with the driver's progress display (``budget_s``: the run's time budget, for the time left);
    a failure becomes one RaytrainError line."""
    try:
        # a live bar in a terminal; a line per validation and every 30 s where the output is a log (jobs, CI, pipes)
        with DriverProgress(board, "bar" if sys.stderr.isatty() else "lines", budget_s=budget_s):
            return trainer.fit()
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        cause = root_cause(exc)
        if isinstance(cause, RaytrainError):
            raise cause from None
        raise RaytrainError(f"training failed: {first_line(cause, 300, typed=True)}") from exc
