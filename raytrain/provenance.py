"""What a run was made with, recorded on every MLflow run: the code's git commit (and whether the tree had
uncommitted changes), the versions of raytrain, torch, Ray, MLflow and Python, and the config as YAML artifacts.
Read on the driver, once per process."""

from __future__ import annotations

import functools
import platform
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = ("raytrain", "torch", "ray", "mlflow", "numpy", "optuna")


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None  # no git on this machine
    return out.stdout.strip() if out.returncode == 0 else None


@functools.cache
def git_state(root: str | None = None) -> tuple[str, str]:
    """(commit, dirty) of the checkout raytrain runs from: ("unknown", "unknown") outside a git checkout (an
    installed wheel, a Ray job's uploaded working dir without ``.git``); dirty "true" when tracked files differ from
    the commit."""
    where = Path(root) if root else Path(__file__).resolve().parents[1]
    commit = _git(where, "rev-parse", "HEAD")
    if not commit:
        return "unknown", "unknown"
    status = _git(where, "status", "--porcelain", "--untracked-files=no")
    return commit, "unknown" if status is None else str(bool(status)).lower()


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def tags() -> dict[str, str]:
    """The MLflow tags of every run: MLflow's own ``mlflow.source.git.commit`` (its UI shows it) and ours."""
    commit, dirty = git_state()
    out = {"raytrain.git_commit": commit, "raytrain.git_dirty": dirty, "python.version": platform.python_version()}
    if commit != "unknown":
        out["mlflow.source.git.commit"] = commit
    out |= {f"{p}.version": _version(p) for p in PACKAGES}
    return out


def config_artifacts(cfg) -> dict[str, str]:
    """artifact name -> text: ``config.yaml`` (the keys set; ``raytrain train config.yaml`` reruns it) and
    ``config_resolved.yaml`` (every value the run used, defaults filled in)."""
    from raytrain.config import config_yaml, resolved_yaml

    return {"config.yaml": config_yaml(cfg), "config_resolved.yaml": resolved_yaml(cfg)}
