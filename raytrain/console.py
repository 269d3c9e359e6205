"""What the console shows: raytrain's own lines (progress, results, one-line errors) by default; Ray's and MLflow's
internals (worker and actor output forwarded by Ray, Ray's start-up and auth notices, MLflow's database set-up) only
when verbose (``raytrain --verbose``, or ``RAYTRAIN_VERBOSE=1`` in the environment, e.g. of a Ray job).

Set through the libraries' documented switches only: ``ray.init(log_to_driver=..., logging_level=...)`` and MLflow's
``MLFLOW_LOGGING_LEVEL`` / ``MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT``. No Ray import at module level: the CLI
calls :func:`set_verbose` before anything imports Ray or MLflow.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os

VERBOSE_ENV = "RAYTRAIN_VERBOSE"


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def set_verbose(on: bool) -> None:
    """Before Ray or MLflow is imported: the mode every later :func:`ray_init_kwargs` (and MLflow's logger) follows.
    Quiet leaves an ``MLFLOW_LOGGING_LEVEL`` the user set as it is."""
    if on:
        os.environ[VERBOSE_ENV] = "1"
    else:
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
        # MLflow prints "View run ... at URL" whenever a run on a server ends: raytrain prints its own summary
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


def ray_init_kwargs() -> dict:
    """``ray.init`` arguments for the console mode: quiet drops the workers' and actors' forwarded output (raytrain's
    progress is drawn by the driver, failures come back as exceptions) and Ray's driver-side notices below ERROR."""
    loud = verbose()
    return {"log_to_driver": loud, "logging_level": logging.INFO if loud else logging.ERROR}


def quiet_ray_data() -> None:
    """A driver that runs a Ray Data job itself (``synthesize --ray``): the executor's INFO progress lines only when
    verbose (Ray Data logs them through its ``ray.data`` logger)."""
    if verbose():
        return
    import ray.data  # noqa: F401 - its import sets up the "ray.data" logger's handlers; quiet the console one after

    for handler in logging.getLogger("ray.data").handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            handler.setLevel(logging.WARNING)  # the session's ray-data.log keeps everything


@contextlib.contextmanager
def quiet_tune():
    """Around a Tune run that is a step of raytrain's own (a pipeline stage's runs): Tune's experiment box, results
    path and state-file notices only when verbose; raytrain draws each run's progress itself (to the stdout it had
    before this block, see :class:`~raytrain.train.progress.DriverProgress` ``file``)."""
    if verbose():
        yield
        return
    tune_log = logging.getLogger("ray.tune")
    level = tune_log.level
    tune_log.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        tune_log.setLevel(level)
