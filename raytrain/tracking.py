"""MLflow tracking. The driver opens and closes the run (so no run is ever left RUNNING by a dead worker); rank 0
of the Train workers logs metrics, image grids and weights into it by run id. Nothing is set at import time.

Default store: embedded SQLite at ``<workdir>/mlflow.db`` with artifacts in ``<workdir>/mlartifacts`` (MLflow 3
refuses the old ``./mlruns`` file store). ``tracking.uri: http://host:5000`` selects a server; an unreachable one is
reported before training starts.
"""

from __future__ import annotations

import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from raytrain.errors import RaytrainError

os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")  # MLflow probes git; this machine may have none in PATH
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def resolve_uri(uri: str | None, workdir: str | Path) -> str:
    if uri:
        return uri
    return f"sqlite:///{Path(workdir).resolve() / 'mlflow.db'}"


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


class DriverRun:
    """An MLflow run opened by the driver: params at start, status at end; ``info`` lets workers log into it."""

    def __init__(self, uri: str, experiment: str, workdir: str | Path, name: str, parent_run_id: str | None = None):
        check_reachable(uri)
        self.uri = uri
        self.client = _client(uri)
        self.experiment_id = _experiment_id(self.client, experiment, uri, workdir)
        tags = {"mlflow.runName": name}
        if parent_run_id:
            tags["mlflow.parentRunId"] = parent_run_id
        self.run_id = self.client.create_run(self.experiment_id, tags=tags).info.run_id

    @property
    def info(self) -> dict[str, str]:
        return {"uri": self.uri, "run_id": self.run_id}

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def set_tags(self, tags: dict[str, Any]) -> None:
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, str(v))

    def end(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status=status)


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
