"""Checks on the driver before a run starts: a ``train.resume_from`` that this config cannot load, and a re-launch
of a stored run (same ``name`` and storage) with another config, each one line instead of a worker failure or a
silently continued old run."""

from __future__ import annotations

import importlib.util
import os
import shutil

from raytrain import locations
from raytrain.config import RunConfig, flatten, validate
from raytrain.errors import RaytrainError


def storage_path(cfg: RunConfig) -> str:
    """Ray's storage of a run's checkpoints: ``storage_path`` (a URI, or a folder made absolute), else
    ``workdir/ray``."""
    return locations.absolute(cfg.storage_path) if cfg.storage_path else locations.join(
        locations.absolute(cfg.workdir), "ray")  # fmt: skip


def outputs_folder(cfg: RunConfig, kind: str, name: str) -> str:
    """Where a pipeline's (``kind`` pipelines) results and synthetic pairs go: under ``storage_path`` when it is set
    (storage every node reads: the downstream runs' workers read the pairs there), else under the workdir."""
    root = cfg.storage_path or cfg.workdir
    return locations.join(locations.absolute(root), kind, name)


def data_roots(cfg: RunConfig) -> list[tuple[str, str]]:
    """(key, folder) of every folder ``cfg.data`` reads (``source``, ``noisy_source``, ``clean_only``, ``noisy_only``,
    ``synthetic``; a dataset's ``KIND:PATH`` gives its PATH); the bundled samples are none."""
    from raytrain.data.datasets import dataset_kind

    out = []
    for key in ("source", "noisy_source", "clean_only", "noisy_only", "synthetic"):
        root = getattr(cfg.data, key)
        if root and root != "samples":
            kind = dataset_kind(root)
            out.append((key, kind[1] if kind else root))
    return out


def check_data_sources(cfg: RunConfig) -> None:
    """Every folder ``cfg.data`` names exists (a local path or a URI): a typo is one line before Ray starts."""
    from raytrain.errors import DataError

    for key, path in data_roots(cfg):
        if not locations.exists(path):
            raise DataError(f"{locations.display(path)}: folder not found (data.{key})")


def check_resume(cfg: RunConfig) -> None:
    """``train.resume_from`` checked on the driver before any worker starts: a refused or foreign file, another
    method's checkpoint, or weights that do not fit this config are one line here, not a worker failure that Ray
    retries and whose tracebacks every worker prints."""
    if not cfg.train.resume_from:
        return
    import torch

    from raytrain.methods import build_method
    from raytrain.train import checkpoint as ckpt
    from raytrain.train.loop import check_state

    state = ckpt.load_state(cfg.train.resume_from)
    with torch.random.fork_rng(devices=[]):  # building nets draws from the RNG; the driver's stays as it was
        check_state(build_method(cfg, torch.device("cpu")), state, cfg.train.resume_from)


#: what a re-launch of a stored run may change: how long it trains and how it is watched, not what it trains
RERUN_MAY_CHANGE = ("name", "workdir", "address", "storage_path", "tracking.", "train.steps", "train.max_minutes",
                    "train.log_every", "train.val_every", "train.checkpoint_every", "train.keep_checkpoints",
                    "train.resume_from", "train.fail_at_step", "scaling.max_failures")  # fmt: skip


def check_rerun(cfg: RunConfig) -> str | None:
    """A run launched again with the same ``name`` and storage resumes from its newest checkpoint (Ray restores
    it): right for the same run (after a crash, or with more ``train.steps``), wrong for another config under an old
    name, which would silently continue (or just return) the old run. Such a config is refused here with one line
    naming what differs; for the same run, returns the line that says where it resumes (None: a new run). Local
    and remote storage (``s3://...``) alike."""
    from raytrain.train.checkpoint import stored_run

    folder = locations.join(storage_path(cfg), cfg.name)
    found = stored_run(folder)
    if found is None:
        return None
    where, step, stored = found
    folder = locations.display(folder)
    try:
        old = flatten(validate(stored, f"{locations.display(where)} config"))
    except RaytrainError:
        old = flatten(stored)  # a config this version no longer accepts: every key of it counts as different
    new = flatten(cfg)
    keep = lambda k: not k.startswith(RERUN_MAY_CHANGE)  # noqa: E731
    # data.mix of a domain the split left empty is stored as 0 (without_empty_domains): not a change
    diff = [k for k in sorted(set(old) | set(new)) if keep(k) and old.get(k) != new.get(k)
            and not (k.startswith("data.mix.") and old.get(k) == 0)]  # fmt: skip
    if diff:
        shown = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in diff[:3])
        more = f" and {len(diff) - 3} more" if len(diff) > 3 else ""
        raise RaytrainError(f"{folder} holds run {cfg.name!r} with another config ({shown}{more}); it would "
                            f"resume that run: give a new name (--set name=...) or remove that folder")  # fmt: skip
    if step >= cfg.train.steps:
        return (f"[raytrain] {cfg.name}: the stored run in {folder} already finished at step {step} "
                f"(train.steps {cfg.train.steps}): nothing to train; raise train.steps to go on, or remove that "
                f"folder to start over")  # fmt: skip
    return f"[raytrain] {cfg.name}: resuming the stored run in {folder} at step {step} of {cfg.train.steps}"


def check_compile(cfg: RunConfig) -> None:
    """``train.compile: true`` where TorchInductor cannot build kernels is one line here, not a compile error on every
    worker: on CPU it needs a C++ compiler (``CXX``, or g++ / clang++ on the PATH), on GPUs Triton."""
    if not cfg.train.compile:
        return
    if cfg.scaling.use_gpu:
        if importlib.util.find_spec("triton") is None:
            raise RaytrainError("train.compile: true needs Triton for torch.compile on GPUs, which is not installed "
                                "(pip install triton), or set train.compile: false")  # fmt: skip
        return
    cxx = os.environ.get("CXX")
    if not (cxx and shutil.which(cxx)) and not any(shutil.which(c) for c in ("g++", "clang++")):
        raise RaytrainError("train.compile: true needs a C++ compiler for torch.compile on CPU (CXX, g++ or "
                            "clang++), none found: install g++, or set train.compile: false")  # fmt: skip
