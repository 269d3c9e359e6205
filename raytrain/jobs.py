"""Ray Jobs: ``jobs/*.yaml`` specs, validated here, submitted with Ray's ``JobSubmissionClient``.

A spec names the ``raytrain`` command to run on the cluster, its runtime_env (working_dir uploaded from the spec's
project, pip packages, env vars), the worker resources and the MLflow tracking URI; resources and tracking become
``--set`` overrides of the command, so the config files stay cluster-agnostic. Before anything is submitted the spec's
keys, the files it names and the config it runs (with those overrides) are checked: a bad spec is one line, nothing
is submitted. The job's driver runs ``raytrain ... --address auto`` on the head node: it checks that the cluster can
place its workers and says so instead of waiting.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError

from raytrain.config import (
    OFFICIAL_RECIPES,
    RunConfig,
    Strict,
    format_validation_error,
    load_config,
    load_yaml_file,
    lr_factor,
    recipe_deviations,
)
from raytrain.errors import ConfigError, RaytrainError, first_line

COMMANDS = ("train", "tune", "ablate", "pipeline")  # those that take a config, --set and --address
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


class Resources(Strict):
    num_workers: Annotated[int, Field(ge=1, le=1024)] | None = None
    cpus_per_worker: Annotated[float, Field(gt=0)] | None = None
    gpus_per_worker: Annotated[float, Field(ge=0)] | None = None


class RuntimeEnv(Strict):
    working_dir: str = "."  # relative to the project root (the spec's parent folder's parent)
    pip: list[str] = Field(default_factory=list)
    env_vars: dict[str, str] = Field(default_factory=dict)
    # how the nodes get raytrain: image (installed in their image, e.g. jobs/kuberay/); upload (a bare Ray cluster:
    # the working dir goes to every node, on its Python path, raytrain's dependencies are pip-installed into the
    # job's environment, and the entrypoint runs as `python -m raytrain.cli`)
    raytrain: Literal["image", "upload"] = "image"
    excludes: list[str] = Field(default_factory=lambda: [".venv/", "runs/", ".git/", "*.pt", "*.db"])


class JobSpec(Strict):
    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")]
    entrypoint: str  # "raytrain train configs/x.yaml --set ...": run on the head node, from working_dir
    runtime_env: RuntimeEnv = Field(default_factory=RuntimeEnv)
    resources: Resources = Field(default_factory=Resources)
    tracking_uri: str | None = None  # an MLflow server the workers reach; null keeps the config's
    storage_path: str | None = None  # checkpoints, sweeps, pipelines: a URI every node writes; null keeps the config's
    dashboard: str | None = (
        None  # default cluster (its dashboard / Ray Jobs URL); --dashboard or RAY_ADDRESS override it
    )
    metadata: dict[str, str] = Field(default_factory=dict)
    # official: the run's effective config (with the resources) must match the method's OFFICIAL_RECIPE (the paper /
    # official code: sizes, weights, optimiser, schedule, steps, global batch); checked before submitting
    recipe: Literal["official", "custom"] = "custom"


def load_spec(path: str | Path) -> tuple[JobSpec, Path]:
    """The validated spec and its project root (working_dir resolved)."""
    p = Path(path)
    raw = load_yaml_file(p, "job spec")
    try:
        spec = JobSpec.model_validate(raw if isinstance(raw, dict) else {})
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, str(p))) from None
    root = (p.resolve().parent.parent / spec.runtime_env.working_dir).resolve()
    if not root.is_dir():
        raise ConfigError(f"{p}: runtime_env.working_dir {spec.runtime_env.working_dir!r} is not a folder ({root})")
    return spec, root


def overrides(spec: JobSpec) -> list[str]:
    r, out = spec.resources, []
    if r.num_workers is not None:
        out.append(f"scaling.num_workers={r.num_workers}")
    if r.cpus_per_worker is not None:
        out.append(f"scaling.cpus_per_worker={r.cpus_per_worker}")
    if r.gpus_per_worker:
        out += ["scaling.use_gpu=true", f"scaling.resources_per_worker={{GPU: {r.gpus_per_worker}}}"]
    if spec.tracking_uri:
        out.append(f"tracking.uri={spec.tracking_uri}")
    if spec.storage_path:
        out.append(f"storage_path={spec.storage_path}")
    return out


#: what every job's processes get unless the spec sets it: Train's controller takes one report per poll of its
#: workers, every RAY_TRAIN_HEALTH_CHECK_INTERVAL_S (2 s by default), and a worker's next report waits for it
JOB_ENV = {"PYTHONUNBUFFERED": "1", "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.25"}


def requirements() -> list[str]:
    """raytrain's own dependencies (installed metadata) but Ray, which the cluster runs: what ``raytrain: upload``
    pip-installs into a job's environment on a bare Ray cluster."""
    import re
    from importlib.metadata import requires

    deps = [r for r in requires("raytrain") or [] if "extra ==" not in r]
    return [r for r in deps if re.split(r"[\[<>=!~; ]", r, maxsplit=1)[0].lower() != "ray"]


def runtime_env(spec: JobSpec, root: Path) -> dict[str, Any]:
    """The job's runtime_env: the working dir (uploaded), excludes, env vars (:data:`JOB_ENV` under the spec's),
    and pip packages (raytrain's dependencies first with ``raytrain: upload``)."""
    r = spec.runtime_env
    env: dict[str, Any] = {"working_dir": str(root), "excludes": r.excludes, "env_vars": {**JOB_ENV, **r.env_vars}}
    pip = (requirements() if r.raytrain == "upload" else []) + r.pip
    if pip:
        env["pip"] = pip
    return env


def command(spec: JobSpec, root: Path) -> list[str]:
    """The entrypoint as argv with the spec's overrides and ``--address auto``; its files and config checked."""
    argv = shlex.split(spec.entrypoint)
    if len(argv) < 3 or argv[0] != "raytrain" or argv[1] not in COMMANDS:
        raise ConfigError(f"{spec.name}: entrypoint must be 'raytrain {{{'|'.join(COMMANDS)}}} CONFIG ...' "
                          f"(got {spec.entrypoint!r})")  # fmt: skip
    config = root / argv[2]
    if not config.is_file():
        raise ConfigError(f"{spec.name}: entrypoint names {argv[2]}, not found under {root}")
    for flag in ("--space",):
        if flag in argv:
            f = argv[argv.index(flag) + 1] if argv.index(flag) + 1 < len(argv) else ""
            if not (root / f).is_file():
                raise ConfigError(f"{spec.name}: {flag} {f!r} not found under {root}")
    cfg = effective_config(spec, root)  # a config that does not load is refused here
    if spec.recipe == "official":
        table = OFFICIAL_RECIPES.get(cfg.method.name)
        if table is None:
            raise ConfigError(f"{spec.name}: recipe: official, but {cfg.method.name} has no official recipe table "
                              f"(methods with one: {', '.join(OFFICIAL_RECIPES)})")  # fmt: skip
        off = recipe_deviations(cfg, table)
        if off:
            raise ConfigError(f"{spec.name}: recipe: official, but {len(off)} setting(s) differ: {'; '.join(off)}")
    extra = [x for o in overrides(spec) for x in ("--set", o)]
    head = ["python", "-m", "raytrain.cli"] if spec.runtime_env.raytrain == "upload" else ["raytrain"]
    return [*head, *argv[1:], *extra, "--address", "auto"]


def effective_config(spec: JobSpec, root: Path) -> RunConfig:
    """The config the spec's command runs (its --set overrides and the spec's resources applied)."""
    argv = shlex.split(spec.entrypoint)
    sets = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--set"]
    return load_config(root / argv[2], [*sets, *overrides(spec)])


def lr_summary(cfg: RunConfig, at: tuple[int, ...] = (10_000, 100_000, 300_000)) -> str:
    """``lr 0.0001 at step 1, ...``: the lr the optimiser uses at step 1, at the given steps within the run and at its
    last step (the scheduler steps after each update: step s trains at the factor of s - 1)."""
    t = cfg.train
    steps = sorted({1, *(s for s in at if s < t.steps), t.steps})
    return "lr " + ", ".join(f"{t.lr * lr_factor(t.schedule, t.steps, s - 1):.3g} at step {s}" for s in steps)


def auth_headers() -> dict[str, str]:
    """Ray's token auth (on by default in Ray 2.60) for the job API: the token in ``RAY_AUTH_TOKEN``, or in the file
    ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token`` (where ``ray start`` keeps it); none if RAY_AUTH_MODE=disabled."""
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        return {}
    token = os.environ.get("RAY_AUTH_TOKEN")
    from raytrain.localray import token_path

    path = token_path()
    if not token and path.is_file():
        token = path.read_text().strip()
    return {"Authorization": f"Bearer {token}"} if token else {}


def plain_http_host(address: str) -> str | None:
    """The host of a job-API address that is plain http to another machine (``http://`` or no scheme), else None."""
    from urllib.parse import urlsplit

    parts = urlsplit(address if "://" in address else f"http://{address}")
    host = parts.hostname or ""
    from raytrain.localray import LOOPBACK

    if parts.scheme != "http" or host in LOOPBACK or host.startswith("127."):
        return None
    return host


def client(address: str | None, spec: JobSpec | None = None):  # address: the dashboard URL (--dashboard)
    from ray.job_submission import JobSubmissionClient

    addr = address or (spec.dashboard if spec else None) or os.environ.get("RAY_ADDRESS") or "http://127.0.0.1:8265"
    headers = auth_headers()
    host = plain_http_host(addr)
    if headers and host:
        print(f"[raytrain] warning: the Ray auth token goes to {host} over plain http (readable on the network); "
              "use an https:// address or an SSH tunnel to 127.0.0.1", file=sys.stderr)  # fmt: skip
    try:
        return JobSubmissionClient(addr, headers=headers)
    except Exception as exc:  # noqa: BLE001 - ConnectionError, ValueError, RuntimeError depending on the failure
        raise RaytrainError(f"cannot reach the Ray job API at {addr}: {first_line(exc)}") from None


def submit(path: str | Path, address: str | None = None, agent_wait_s: float = 120.0) -> tuple[Any, str, list[str]]:
    """Validate and submit; returns (client, job id, the command run)."""
    spec, root = load_spec(path)
    argv = command(spec, root)
    env = runtime_env(spec, root)
    c = client(address, spec)
    submission_id = f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    deadline = time.time() + agent_wait_s
    while True:
        try:
            job_id = c.submit_job(entrypoint=shlex.join(argv), runtime_env=env, entrypoint_num_cpus=0,
                                  submission_id=submission_id,
                                  metadata={"raytrain.spec": str(path), **spec.metadata})  # fmt: skip
            return c, job_id, argv
        except RuntimeError as exc:
            # A head that has just started answers before its job agent is up ("No available agent to submit job"):
            # wait for it rather than fail; anything else is the user's to see.
            if "No available agent" not in str(exc):
                raise RaytrainError(f"the job API refused {spec.name}: {first_line(exc, 300)}") from None
            if time.time() > deadline:
                raise RaytrainError(f"the cluster's job agent did not come up within {agent_wait_s:.0f} s") from None
            time.sleep(2)


def wait(c, job_id: str, poll_s: float = 2.0, timeout_s: float | None = None, echo: bool = True) -> str:
    """Follow the job's logs until it ends; returns its final status."""
    shown, t0 = 0, time.time()
    while True:
        status = str(c.get_job_status(job_id)).split(".")[-1]
        logs = c.get_job_logs(job_id)
        if echo and len(logs) > shown:
            print(logs[shown:], end="", flush=True)
        shown = len(logs)
        if status in TERMINAL:
            return status
        if timeout_s is not None and time.time() - t0 > timeout_s:
            raise RaytrainError(f"job {job_id} still {status} after {timeout_s:.0f} s")
        time.sleep(poll_s)


def tail(c, job_id: str, lines: int = 30) -> str:
    return "\n".join(c.get_job_logs(job_id).rstrip().splitlines()[-lines:])
