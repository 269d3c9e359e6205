"""MLflow tracking. The driver opens and closes the run (so no run is ever left RUNNING by a dead worker); rank 0
of the Train workers logs metrics, image grids and weights into it by run id. Nothing is set at import time.

The store: ``tracking.uri`` (``http://host:5000``: a server, what a cluster needs, since every worker logs into it),
else the ``MLFLOW_TRACKING_URI`` environment variable, else embedded SQLite at ``<workdir>/mlflow.db`` with artifacts
in ``<workdir>/mlartifacts`` (one machine only; MLflow 3 refuses the old ``./mlruns`` file store). An unreachable
server is reported before training starts; a file store on a cluster is refused (raytrain/train/cluster.py).
"""

from __future__ import annotations

import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from raytrain.errors import RaytrainError

os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")  # MLflow probes git; this machine may have none in PATH
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def resolve_uri(uri: str | None, workdir: str | Path) -> str:
    """``tracking.uri``, else ``MLFLOW_TRACKING_URI``, else SQLite in the (local) workdir."""
    from raytrain import locations

    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    if locations.is_uri(workdir):
        raise RaytrainError(f"workdir {locations.display(workdir)} is not a local folder, where MLflow's default "
                            "SQLite store would live: set tracking.uri (or MLFLOW_TRACKING_URI) to an MLflow "
                            "server")  # fmt: skip
    return f"sqlite:///{Path(locations.local_path(workdir)).resolve() / 'mlflow.db'}"


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail fast (one line) when the tracking store cannot be used."""
    if uri.startswith(("http://", "https://")):
        url = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - user-given tracking server
                if resp.status != 200:
                    raise RaytrainError(f"MLflow server {uri} answered {resp.status} on /health")
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RaytrainError(
                f"MLflow server {uri} is unreachable ({reason}); start it or fix tracking.uri"
            ) from None
    elif uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///") :])
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RaytrainError(f"MLflow store {db}: cannot create its folder ({exc.strerror})") from None
        if not os.access(db.parent, os.W_OK):
            raise RaytrainError(f"MLflow store {db}: folder is not writable")


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _experiment_id(client, name: str, uri: str, workdir: str | Path) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = None
    if uri.startswith("sqlite:///"):  # keep artifacts beside the database, not in the process's cwd
        location = (Path(workdir).resolve() / "mlartifacts").as_uri()
    return client.create_experiment(name, artifact_location=location)


END_STATUSES = ("FINISHED", "FAILED", "KILLED")


def exit_status(exc: BaseException | None) -> str:
    """The status a run ends with when its block ends with ``exc``: Ctrl-C / a kill signal -> KILLED."""
    if exc is None:
        return "FINISHED"
    return "KILLED" if isinstance(exc, (KeyboardInterrupt, SystemExit)) else "FAILED"


class Store:
    """One MLflow experiment in one tracking store, or nothing (``tracking.enabled: false``: every call is a no-op,
    runs have ``run_id`` None). Picklable: the client is made on first use in each process."""

    def __init__(self, uri: str | None, experiment: str = "raytrain", workdir: str | Path = "."):
        self.uri, self.experiment, self.workdir = uri, experiment, str(workdir)
        self._client_obj = None
        self._experiment_id: str | None = None

    @classmethod
    def of(cls, cfg, check: bool = True) -> Store:
        """The store a config names; ``check`` fails fast (one line) when it cannot be used."""
        if not cfg.tracking.enabled:
            return cls(None)
        uri = resolve_uri(cfg.tracking.uri, cfg.workdir)
        if check:
            check_reachable(uri)
        return cls(uri, cfg.tracking.experiment, cfg.workdir)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_client_obj": None}

    @property
    def enabled(self) -> bool:
        return self.uri is not None

    @property
    def client(self):
        if self._client_obj is None:
            self._client_obj = _client(self.uri)
        return self._client_obj

    @property
    def experiment_id(self) -> str:
        if self._experiment_id is None:
            self._experiment_id = _experiment_id(self.client, self.experiment, self.uri, self.workdir)
        return self._experiment_id

    def open(self, name: str, parent: str | None = None, tags: dict | None = None, params: dict | None = None
             ) -> Run:  # fmt: skip
        """A new RUNNING run (a child of ``parent`` when given), tagged with what made it (git commit, package
        versions: :mod:`raytrain.provenance`)."""
        if not self.enabled:
            return Run(self, None)
        from raytrain import provenance

        all_tags = {"mlflow.runName": name} | ({"mlflow.parentRunId": parent} if parent else {}) | provenance.tags()
        run = Run(self, self.client.create_run(self.experiment_id, tags=all_tags).info.run_id)
        run.set_tags(tags or {})
        run.log_params(params or {})
        return run

    def get(self, run_id: str | None) -> Run:
        """A handle on an existing run (None: a no-op handle)."""
        return Run(self, run_id if self.enabled else None)

    def reopen(self, run_id: str) -> Run:
        """An ended run set RUNNING again (a resumed sweep's parent)."""
        run = self.get(run_id)
        if run.run_id:
            self.client.update_run(run_id, "RUNNING")
        return run

    @contextmanager
    def run(self, name: str, parent: str | None = None, tags: dict | None = None, params: dict | None = None,
            resume: str | None = None, orphans: str | None = None) -> Iterator[Run]:  # fmt: skip
        """A run that ends with its block's real status (FINISHED / FAILED / KILLED, see :func:`exit_status`), as do
        its children still RUNNING then (``orphans`` overrides their status; default: the block's, KILLED when it
        finished). ``resume``: reopen that run instead of creating one."""
        run = self.reopen(resume) if resume else self.open(name, parent, tags, params)
        try:
            yield run
        except BaseException as exc:
            run.close(exit_status(exc), orphans)
            raise
        run.close("FINISHED", orphans)

    def children(self, parent: str | None, where: str = "") -> list[Run]:
        """The child runs of ``parent`` still RUNNING (``where``: an extra MLflow filter, e.g. on a tag)."""
        if not (self.enabled and parent):
            return []
        query = f"tags.mlflow.parentRunId = '{parent}' and attributes.status = 'RUNNING'" + (
            f" and {where}" if where else "")  # fmt: skip
        return [self.get(r.info.run_id) for r in self.client.search_runs([self.experiment_id], query)]

    def find(self, parent: str | None, where: str) -> Run:
        """The child run of ``parent`` that ``where`` (an MLflow filter, e.g. on a tag) picks, whatever its status; a
        run that records nothing when tracking is off or none matches."""
        if not (self.enabled and parent):
            return Run(self, None)
        query = f"tags.mlflow.parentRunId = '{parent}' and {where}"
        found = self.client.search_runs([self.experiment_id], query, max_results=1)
        return self.get(found[0].info.run_id if found else None)

    def end_children(self, parent: str | None, status: str, where: str = "") -> int:
        """End every child run of ``parent`` still RUNNING with ``status``; returns how many."""
        runs = self.children(parent, where)
        for run in runs:
            run.end(status)
        return len(runs)


class Run:
    """A handle on one MLflow run, used by the driver; ``info`` lets Train workers log into it by id."""

    def __init__(self, store: Store, run_id: str | None):
        self.store, self.run_id = store, run_id

    def __bool__(self) -> bool:
        return self.run_id is not None

    @property
    def uri(self) -> str | None:
        return self.store.uri

    @property
    def info(self) -> dict[str, str] | None:
        return {"uri": self.store.uri, "run_id": self.run_id} if self.run_id else None

    @property
    def status(self) -> str | None:
        return self.store.client.get_run(self.run_id).info.status if self.run_id else None

    def log_params(self, params: dict[str, Any]) -> None:
        if not (self.run_id and params):
            return
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.store.client.log_batch(self.run_id, params=items[i : i + 100])

    def set_tags(self, tags: dict[str, Any]) -> None:
        for k, v in tags.items() if self.run_id else ():
            self.store.client.set_tag(self.run_id, k, str(v))

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        for k, v in metrics.items() if self.run_id else ():
            self.store.client.log_metric(self.run_id, k, float(v), step=step)

    def log_artifact(self, path: str | Path, folder: str | None = None) -> None:
        if self.run_id:
            self.store.client.log_artifact(self.run_id, str(path), artifact_path=folder)

    def log_config(self, cfg) -> None:
        """The run's config as ``config.yaml`` (rerunnable) and ``config_resolved.yaml`` (every value)."""
        from raytrain.provenance import config_artifacts

        for name, text in config_artifacts(cfg).items():
            self.log_text(text, name)

    def log_text(self, text: str, artifact_file: str) -> None:
        """A text artifact from memory (a file whose original is at a URI)."""
        if self.run_id:
            self.store.client.log_text(self.run_id, text, artifact_file)

    def child(self, name: str, tags: dict | None = None, params: dict | None = None) -> Run:
        """A new child run (the caller ends it; :meth:`close` ends it too if it is still RUNNING then)."""
        return self.store.open(name, self.run_id, tags, params) if self.run_id else Run(self.store, None)

    def end(self, status: str = "FINISHED") -> None:
        if status not in END_STATUSES:
            raise ValueError(f"run status must be one of {END_STATUSES}, got {status!r}")
        if self.run_id:
            self.store.client.set_terminated(self.run_id, status=status)

    def close(self, status: str, orphans: str | None = None) -> None:
        """End the children still RUNNING (with ``orphans``, default ``status`` or KILLED when it is FINISHED), then
        this run if it is still RUNNING."""
        if not self.run_id:
            return
        self.store.end_children(self.run_id, orphans or ("KILLED" if status == "FINISHED" else status))
        if self.status == "RUNNING":
            self.end(status)


class WorkerLogger:
    """Logs into an existing run from a Train worker (rank 0 only, by the loop's choice)."""

    def __init__(self, info: dict[str, str]):
        self.client = _client(info["uri"])
        self.run_id = info["run_id"]
        # After a worker failure Ray restarts the loop from the last checkpoint (or step 0) and the steps after it run
        # again (exactly: same data, same RNG); their metrics are already in the run, so they are not logged twice.
        self.logged_until = self.last_logged_step()

    def last_logged_step(self) -> int:
        """The largest step any metric of the run was logged at (-1: none)."""
        keys = list(self.client.get_run(self.run_id).data.metrics)
        steps = [m.step for k in keys for m in self.client.get_metric_history(self.run_id, k)]
        return max(steps, default=-1)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        import time

        from mlflow.entities import Metric

        if step <= self.logged_until:
            return
        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in metrics.items() if np.isfinite(v)]
        if items:
            self.client.log_batch(self.run_id, metrics=items)

    def log_image(self, image: np.ndarray, name: str) -> None:
        """An (H, W[, C]) float image in [0, 1] as a PNG artifact under ``images/``."""
        from skimage.io import imsave

        from raytrain.data.images import to_uint8

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            imsave(path, to_uint8(image), check_contrast=False)
            self.client.log_artifact(self.run_id, str(path), artifact_path="images")
