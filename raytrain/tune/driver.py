"""``raytrain tune`` / ``raytrain ablate``: Ray Tune over the one training loop, in Train V2's form.

Each trial is a Tune function that builds a ``TorchTrainer`` for its config and calls ``fit()`` (``Tuner(TorchTrainer)``
is gone in Train V2); a Train callback forwards each validation report to Tune. Trials take no CPU themselves
(``cpu: 0``) and at most ``concurrent`` run at once, after a check that ``concurrent`` worker groups fit on the cluster,
so a sweep can neither deadlock (trials holding the CPUs their workers need) nor wait forever.

MLflow: the driver opens one parent run per sweep; each trial opens a child run (params, tags ``raytrain.trial_id``)
that its rank-0 worker logs curves into. A driver-side Tune callback ends every child run with the trial's real
status (ASHA-stopped trials are FINISHED with ``raytrain.early_stopped``); at exit any child still RUNNING is
marked KILLED, so no run stays RUNNING. ``--resume`` restores the Tune experiment: finished trials are kept,
unfinished and errored ones rerun, the same parent run continues.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback

from raytrain import locations
from raytrain.config import RunConfig, check_name, check_weight_files, to_raw, validate
from raytrain.errors import RaytrainError, first_line
from raytrain.locations import OutputFolder
from raytrain.tracking import Run, Store
from raytrain.tune.space import Space, check_metric, check_space, to_tune, trial_raw

STATE = "raytrain_sweep.json"


class ValidationReportCallback(TuneReportCallback):
    """Forward only the reports that carry validation metrics: Tune checks the searched metric in every result,
    and the loop's loss-only reports between validations do not have it."""

    def after_report(self, run_context, metrics, checkpoint):
        if any(k.startswith("val_") for k in metrics[0]):
            super().after_report(run_context, metrics, checkpoint)


def trial(params: dict, base_raw: dict, sweep: str, store: Store, parent: str | None) -> None:
    """One trial: the base config with this trial's values, trained in this process (one worker, see
    :func:`~raytrain.train.launch.in_process`) or by a TorchTrainer; a child MLflow run."""
    from raytrain.config import flatten
    from raytrain.data.collection import load_domains
    from raytrain.train.launch import in_process, root_cause, train_trial

    started = time.time()
    trial_id = tune.get_context().get_trial_id()
    cfg = validate(trial_raw(base_raw, params) | {"name": f"{sweep}-{trial_id}"}, f"trial {trial_id}")
    tags = {"raytrain.trial_id": trial_id, "raytrain.sweep": sweep, "method": cfg.method.name,
            "raytrain.searched": json.dumps(params, default=str),
            "raytrain.trial_runner": "process" if in_process(cfg) else "trainer"}  # fmt: skip
    with store.run(cfg.name, parent, tags, flatten(cfg)) as run:
        marks = {"mlflow": time.time()}  # start-up phases, reported with the first step (startup_<phase>_s)
        try:
            collection = load_domains(cfg)
            marks["images"] = time.time()
            train_trial(cfg, collection, run.info, started, marks)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            cause = root_cause(exc)
            raise RaytrainError(f"trial {trial_id}: {first_line(cause, 300, typed=True)}") from None


class MLflowStatus(tune.Callback):
    """Driver side: end each trial's child run with the trial's status (a stopped trial's actor is killed before its
    own ``finally`` could run)."""

    def __init__(self, store: Store, parent: str | None, steps: int):
        self.store, self.parent, self.steps = store, parent, steps

    def _close(self, trial_id: str, status: str, tags: dict | None = None) -> None:
        for run in self.store.children(self.parent, f"tags.`raytrain.trial_id` = '{trial_id}'"):
            run.set_tags(tags or {})
            run.end(status)

    def on_trial_complete(self, iteration, trials, trial, **info):
        stopped = int(trial.last_result.get("step", self.steps)) < self.steps  # ASHA stopped it
        self._close(trial.trial_id, "FINISHED", {"raytrain.early_stopped": str(stopped)})

    def on_trial_error(self, iteration, trials, trial, **info):
        self._close(trial.trial_id, "FAILED")


@dataclass
class SweepResult:
    rows: list[dict]  # one per trial: trial_id, status, the searched values, the last validation metrics
    best: dict | None
    best_config: Path | None  # a local copy (the sweep's folder may be a URI: ``folder.where("best_config.yaml")``)
    folder: OutputFolder  # the sweep's results: ``folder / f`` a local file, ``folder.where()`` the location
    parent_run_id: str | None
    wall_s: float
    histories: dict[str, list[dict]] = field(default_factory=dict)  # trial_id -> validation reports (step, val_*)


def absolute_paths(raw: dict) -> dict:
    """Local paths made absolute (URIs kept as they are): Tune runs each trial in its own working directory."""
    raw = json.loads(json.dumps(raw))
    raw["workdir"] = locations.absolute(raw.get("workdir", "runs"))
    if raw.get("storage_path"):
        raw["storage_path"] = locations.absolute(raw["storage_path"])
    data = raw.get("data", {})
    for k in ("source", "noisy_source", "synthetic", "clean_only", "noisy_only"):
        v = data.get(k)
        if v and v != "samples" and not locations.is_uri(v) and Path(v).exists():
            data[k] = str(Path(v).resolve())
    return raw


def sweep_folder(cfg: RunConfig, name: str) -> str:
    """A sweep's Tune experiment and results: ``storage_path/NAME`` (a URI or a folder), else
    ``workdir/sweeps/NAME``."""
    root = locations.absolute(cfg.storage_path) if cfg.storage_path else locations.join(
        locations.absolute(cfg.workdir), "sweeps")  # fmt: skip
    return locations.join(root, name)


def trial_resources(cfg: RunConfig) -> dict:
    """What a trial itself holds. A trial that trains in its own process holds its one worker's resources. A
    TorchTrainer trial's workers hold the compute; the trial (a driver) holds a ``trial_slot``, a custom resource the
    embedded Ray has (a cluster can add it: ``ray start --head --resources='{"trial_slot": 64}'``); otherwise a
    sliver of CPU, which :func:`run_sweep` counts when checking that the workers still fit."""
    import ray

    from raytrain.train.launch import TRIAL_SLOT, in_process

    if in_process(cfg):
        s = cfg.scaling
        extra = {k: v for k, v in s.resources_per_worker.items() if k not in ("CPU", "GPU")}
        gpu = s.resources_per_worker.get("GPU", 1.0) if s.use_gpu else 0
        return {"cpu": s.cpus_per_worker, "gpu": gpu, **extra}
    return {"cpu": 0, TRIAL_SLOT: 1} if ray.cluster_resources().get(TRIAL_SLOT, 0) >= 1 else {"cpu": TRIAL_CPU}


TRIAL_CPU = 0.01


def check_concurrency(cfg: RunConfig, concurrent: int) -> None:
    """On the embedded Ray, concurrent worker groups must fit on this machine's cores (logical CPUs are padded for
    Ray Data, so Ray alone would not refuse); on a cluster, :func:`check_resources` compares with its resources."""
    from raytrain.train.launch import check_local_cpus

    if cfg.address is None:
        check_local_cpus(cfg, concurrent)


def resumed_parent(folder: str, resume: bool) -> str | None:
    """The parent run id a resumed sweep keeps (from its state file)."""
    state = locations.join(folder, STATE)
    return json.loads(locations.read_bytes(state))["parent_run_id"] if resume and locations.is_file(state) else None


def run_sweep(cfg: RunConfig, space: Space, name: str, samples: int, concurrent: int, metrics: list[str],
              modes: list[str], scheduler: str | None = None, search: str = "optuna", resume: bool = False,
              seed: int | None = None) -> SweepResult:  # fmt: skip
    """Run (or resume) a sweep; everything is validated before a trial starts."""
    from raytrain.tracking import Store
    from raytrain.train.cluster import check_cluster, check_visible, data_files
    from raytrain.train.launch import check_resources, connect

    base_raw, folder = check_sweep(cfg, space, name, samples, concurrent, metrics, modes, scheduler, resume)
    t0 = time.perf_counter()
    connect(cfg.address, cfg, trials=concurrent)
    from raytrain.train.launch import in_process

    extra = 0.0 if in_process(cfg) else concurrent * trial_resources(cfg)["cpu"]  # in process: the trial is the worker
    check_resources(cfg, trials=concurrent, extra_cpu=extra)
    store = Store.of(cfg)
    # trials log to the store, keep their results in storage and read the data on whichever node runs them
    nodes = check_cluster(cfg, store.uri)
    check_visible(data_files(cfg), "the data file", nodes)
    params = {"space": space.origin, "samples": samples, "concurrent": concurrent, "metric": ",".join(metrics),
              "mode": ",".join(modes), "scheduler": scheduler or "fifo", "search": search}  # fmt: skip
    # the parent ends FINISHED, FAILED (every trial failed) or KILLED (Ctrl-C); trial runs still open then: KILLED
    with store.run(name, None, {"raytrain.stage": "sweep", "raytrain.sweep": name}, params,
                   resume=resumed_parent(folder, resume), orphans="KILLED") as parent:  # fmt: skip
        locations.write_text(locations.join(folder, STATE),
                             json.dumps({"parent_run_id": parent.run_id, "base": base_raw}, default=str))  # fmt: skip
        fn = tune.with_resources(tune.with_parameters(trial, base_raw=base_raw, sweep=name, store=store,
                                                      parent=parent.run_id), trial_resources(cfg))  # fmt: skip
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # Ctrl-C / SIGTERM raise here: runs are closed, state kept
        os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")  # snapshot often: a killed driver loses <= 2 s
        if resume:
            closed = store.end_children(parent.run_id, "KILLED")  # the killed driver's trials rerun under new runs
            if closed:
                print(f"[sweep] marked {closed} interrupted trial run(s) KILLED; they rerun")
            tuner = tune.Tuner.restore(folder, trainable=fn, resume_unfinished=True, restart_errored=True)
        else:
            tuner = make_tuner(fn, space, name, folder, samples, concurrent, metrics, modes, scheduler, search,
                               cfg.seed if seed is None else seed, [MLflowStatus(store, parent.run_id,
                                                                                 cfg.train.steps)])  # fmt: skip
        results = tuner.fit()
        check_some_trial_ran(results, name, folder)
        return summarize(results, cfg, space, metrics, modes, folder, parent, time.perf_counter() - t0)


def check_sweep(cfg: RunConfig, space: Space, name: str, samples: int, concurrent: int, metrics: list[str],
                modes: list[str], scheduler: str | None, resume: bool) -> tuple[dict, str]:  # fmt: skip
    """Everything a sweep can check before it starts; returns the base config (paths absolute) and its folder."""
    from raytrain.train.preflight import check_compile, check_resume

    check_name(name, "sweep name")
    base_raw = absolute_paths(to_raw(cfg))
    check_weight_files(cfg)
    check_resume(cfg)
    check_compile(cfg)
    check_space(space, base_raw, name)
    check_metric(cfg, metrics, modes)
    if concurrent < 1 or samples < 1:
        raise RaytrainError(f"--samples and --concurrent must be >= 1 (got {samples}, {concurrent})")
    if scheduler == "asha" and len(metrics) > 1:
        raise RaytrainError("--scheduler asha needs a single metric (it cannot stop trials on several objectives)")
    check_concurrency(cfg, concurrent)
    folder = sweep_folder(cfg, name)
    shown = locations.display(folder)
    if resume and not tune.Tuner.can_restore(folder):
        raise RaytrainError(f"--resume: no sweep to resume at {shown}")
    if not resume and locations.list_dir(folder):
        raise RaytrainError(f"sweep {name!r} exists at {shown}; add --resume to continue it, or pick another --name")
    return base_raw, folder


def check_some_trial_ran(results, name: str, folder: str) -> None:
    """One line naming the first trial's error when every trial failed."""
    errors = [r.error for r in results]
    if errors and all(e is not None for e in errors):
        from raytrain.train.launch import root_cause

        cause = root_cause(errors[0])
        why = first_line(cause, typed=not isinstance(cause, RaytrainError))
        raise RaytrainError(f"sweep {name!r}: all {len(errors)} trial(s) failed; the first: {why} "
                            f"(logs: {locations.display(folder)})")  # fmt: skip


def make_tuner(fn, space: Space, name: str, folder: str, samples: int, concurrent: int, metrics: list[str],
               modes: list[str], scheduler: str | None, search: str, seed: int, callbacks: list):  # fmt: skip
    from ray.tune.schedulers import ASHAScheduler

    single = len(metrics) == 1
    searcher = None
    if search == "optuna":
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        sampler = optuna.samplers.TPESampler(seed=seed) if single else optuna.samplers.NSGAIISampler(seed=seed)
        searcher = OptunaSearch(metric=metrics if not single else metrics[0], mode=modes if not single else modes[0],
                                sampler=sampler)  # fmt: skip
    sched = None
    if scheduler == "asha":
        sched = ASHAScheduler(time_attr="training_iteration", grace_period=1, reduction_factor=2)
    return tune.Tuner(
        fn,
        param_space=to_tune(space, grid_as_search=search == "grid"),
        tune_config=tune.TuneConfig(
            metric=metrics[0] if single else None, mode=modes[0] if single else None, search_alg=searcher,
            scheduler=sched, num_samples=samples, max_concurrent_trials=concurrent, reuse_actors=True,
        ),
        run_config=tune.RunConfig(name=name, storage_path=locations.parent(folder), callbacks=callbacks,
                                  failure_config=tune.FailureConfig(max_failures=0), verbose=1),
    )  # fmt: skip


def summarize(results, cfg: RunConfig, space: Space, metrics: list[str], modes: list[str], folder: str,
              parent: Run, wall: float) -> SweepResult:  # fmt: skip
    rows, histories = [], {}
    out = OutputFolder(folder)
    for r in results:
        last = r.metrics or {}
        row = {"trial_id": last.get("trial_id", Path(r.path).name), "status": "ERROR" if r.error else "TERMINATED",
               **{k: r.config.get(k) for k in space.params}}  # fmt: skip
        row.update({k: v for k, v in last.items() if k.startswith(("val_", "startup_")) or k == "step"})
        rows.append(row)
        df = r.metrics_dataframe
        if df is not None and "step" in df:
            cols = ["step", *(c for c in df.columns if c.startswith("val_"))]
            histories[row["trial_id"]] = df[cols].dropna().to_dict("records")
    ok = [row for row in rows if all(m in row for m in metrics)]
    best, best_path = None, None
    if ok:
        m, mode = metrics[0], modes[0]
        best = (max if mode == "max" else min)(ok, key=lambda row: row[m])
        best_raw = trial_raw(to_raw(cfg), {k: best[k] for k in space.params}) | {"name": f"{cfg.name}-best"}
        validate(best_raw, "best config")
        best_path = out / "best_config.yaml"
        write_yaml(best_raw, best_path, f"best of sweep {locations.name(folder)} by {m} ({mode}): {best[m]:.4f}")
        out.publish("best_config.yaml")
        parent.log_artifact(best_path)
        parent.log_metrics({f"best_{m}": best[m]})
    return SweepResult(rows, best, best_path, out, parent.run_id, wall, histories)


def write_yaml(raw: dict, path: Path, comment: str) -> None:
    import yaml

    from raytrain.files import atomic_write_text

    atomic_write_text(f"# {comment}\n" + yaml.safe_dump(raw, sort_keys=False), path)
