"""Several independent runs side by side: a pipeline stage's runs (the noise model; one downstream run per arm).

Each run is a Ray Tune trial of one experiment, so the runs start as soon as the cluster has room for them (on a GPU
cluster, one arm per GPU at once; on one machine, as many as its cores hold) and a run with one worker trains in the
trial's own process (:func:`~raytrain.train.launch.train_in_process`: no worker group, no process group, seconds to
start instead of ten, one process instead of six); a run with several workers is a ``TorchTrainer`` inside its trial,
as a sweep's is. Every run is what :func:`~raytrain.train.launch.run_training` makes of it: a child MLflow run of
``parent_run_id`` with its config's params, its curves, its weights artifact and ``raytrain.checkpoint`` tag, and a
checkpoint in the storage (``storage_path/EXPERIMENT/<trial>/checkpoint_*``) that every later stage reads through
:mod:`raytrain.locations`. ``scaling.max_failures`` restarts a failed run from its last checkpoint (Tune's failure
handling). A run that fails for good is one line naming it.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time

from ray import tune

from raytrain.config import RunConfig, flatten, validate
from raytrain.console import quiet_tune
from raytrain.errors import RaytrainError, first_line
from raytrain.train.launch import TrainResult


def group_trial(params: dict, raws: list[dict], collections: list, store, parent: str | None, experiment: str,
                boards: list, tags: list[dict]) -> None:  # fmt: skip
    """The trial of run ``params["run"]``: its config, its child MLflow run, trained in this process (one worker) or
    by a TorchTrainer on the images the driver read (``collections``: through the object store, so a trial on a node
    that cannot see the driver's disk trains on them); rank 0 writes its progress to the run's board (``boards``),
    which the driver draws."""
    from raytrain.train.launch import in_process, root_cause, train_trial

    started = time.time()
    cfg, board = validate(raws[params["run"]], "config"), boards[params["run"]]
    trial_id = tune.get_context().get_trial_id()
    runner = "process" if in_process(cfg) else "trainer"
    run_tags = {"method": cfg.method.name, "raytrain.trial_id": trial_id, "raytrain.group": experiment,
                "raytrain.trial_runner": runner, **tags[params["run"]]}  # fmt: skip
    with store.run(cfg.name, parent, run_tags, flatten(cfg)) as run:
        run.log_config(cfg)
        marks = {"mlflow": time.time()}
        try:
            collection = collections[params["run"]]
            run.set_tags({"split_sizes": json.dumps(collection.split.sizes()),
                          "val_images": ",".join(collection.val_names)})  # fmt: skip
            marks["images"] = time.time()
            train_trial(cfg, collection, run.info, started, marks, board)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            cause = root_cause(exc)
            if isinstance(cause, RaytrainError):
                raise type(cause)(f"{cfg.name}: {cause}") from None
            raise RaytrainError(f"{cfg.name}: {first_line(cause, 300, typed=True)}") from None


def concurrency(cfgs: list[RunConfig]) -> int:
    """How many of the runs fit at once: on the embedded Ray, this machine's cores over one run's worker CPUs; on a
    cluster, its CPUs over one run's CPUs (workers and patch streams) and its GPUs over one run's GPUs."""
    import ray

    from raytrain.train.launch import data_cpus

    s = cfgs[0].scaling
    worker_cpus = s.num_workers * s.cpus_per_worker
    if cfgs[0].address is None:
        fit = (os.cpu_count() or 1) // max(worker_cpus, 1e-9)
    else:
        have = ray.cluster_resources()
        fit = have.get("CPU", 0.0) // (worker_cpus + data_cpus(cfgs[0]))
        if s.use_gpu:
            fit = min(fit, have.get("GPU", 0.0) // (s.num_workers * s.resources_per_worker.get("GPU", 1.0)))
    return int(max(1, min(len(cfgs), fit)))


def run_group(cfgs: list[RunConfig], experiment: str, parent_run_id: str | None = None,
              tags: list[dict] | None = None) -> list[TrainResult]:  # fmt: skip
    """Train ``cfgs`` (independent runs with the same scaling) side by side as the trials of Tune experiment
    ``experiment``; returns their results in order. ``tags``: each run's own MLflow tags, set when it opens (an
    interrupted stage's runs carry them too). Raises RaytrainError naming the first run that failed."""
    from raytrain import locations
    from raytrain.config import to_raw
    from raytrain.data.collection import load_domains
    from raytrain.train.checkpoint import picked_in_folder
    from raytrain.train.cluster import check_data
    from raytrain.train.launch import preflight, root_cause
    from raytrain.train.preflight import storage_path
    from raytrain.train.progress import DriverProgress, ProgressBoard
    from raytrain.train.records import checkpoint_config, picked, record_checkpoint
    from raytrain.tune.driver import MLflowStatus, absolute_paths, trial_resources

    if not cfgs:
        return []
    collections = []
    for cfg in cfgs:  # every check run_training makes, for every run, before any starts
        store, nodes, _ = preflight(cfg)
        collections.append(load_domains(cfg))
        check_data(collections[-1], nodes)
    storage = storage_path(cfgs[0])
    raws = [absolute_paths(to_raw(c)) for c in cfgs]
    boards = [ProgressBoard.remote() for _ in cfgs]  # each run's progress (and pass counter), drawn here
    fn = tune.with_parameters(group_trial, raws=raws, collections=collections, store=store, parent=parent_run_id,
                              experiment=experiment, boards=boards, tags=tags or [{} for _ in cfgs])  # fmt: skip
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # Ctrl-C raises here: the runs are closed KILLED
    tuner = tune.Tuner(
        tune.with_resources(fn, trial_resources(cfgs[0])),
        param_space={"run": tune.grid_search(list(range(len(cfgs))))},
        tune_config=tune.TuneConfig(max_concurrent_trials=concurrency(cfgs), reuse_actors=True),
        run_config=tune.RunConfig(
            name=experiment, storage_path=storage, verbose=0, callbacks=[MLflowStatus(store, parent_run_id, 0)],
            failure_config=tune.FailureConfig(max_failures=cfgs[0].scaling.max_failures),
            checkpoint_config=checkpoint_config(cfgs[0], tune.CheckpointConfig),
        ),
    )  # fmt: skip
    # a bar in a terminal for one run; a line per validation (and every 30 s) per run where several share the output
    mode = "bar" if sys.stderr.isatty() and len(cfgs) == 1 else "lines"
    out = sys.stdout  # Tune's own lines are dropped unless verbose; the runs' progress goes where output went
    with contextlib.ExitStack() as drawn:
        for board in boards:
            drawn.enter_context(DriverProgress(board, mode, file=out if mode == "lines" else None))
        with quiet_tune():
            results = tuner.fit()  # interrupted: the parent run's block ends the runs still open KILLED
    done: dict[int, TrainResult] = {}
    for r in results:
        i = r.config["run"]
        if r.error is not None:
            cause = root_cause(r.error)
            if isinstance(cause, RaytrainError):
                raise cause
            raise RaytrainError(f"{cfgs[i].name}: {first_line(cause, 300, typed=True)}")
        metrics = dict(r.metrics or {})
        run = store.find(parent_run_id, f"tags.`raytrain.trial_id` = '{metrics.get('trial_id', '')}'")  # its run
        checkpoint, last, how = picked(cfgs[i], r, storage)  # train.keep_best's pick
        if checkpoint is None:  # a multi-worker trial: its TorchTrainer stored them in storage/NAME, not the trial
            checkpoint, last, how = picked_in_folder(locations.join(storage, cfgs[i].name))
        if checkpoint is not None:
            record_checkpoint(run, checkpoint, last, how, cfgs[i].tracking.register)
        df = r.metrics_dataframe
        history = df.to_dict("records") if df is not None else []
        done[i] = TrainResult(metrics, checkpoint, run.run_id, storage, history, last, how)
    return [done[i] for i in range(len(cfgs))]
