"""Which checkpoint a finished run stands for and what its MLflow run records of it: Ray's retention ranked by
``train.keep_best`` (:func:`checkpoint_config`), the pick from Ray's result (:func:`picked`), the checkpoint's
location under the run's storage (:func:`checkpoint_location`) and the run's weights, MLflow model and tags
(:func:`record_checkpoint`). Every checkpoint is read through its location (S3, NFS, a local folder)."""

from __future__ import annotations

from pathlib import Path

import ray.train

from raytrain import locations
from raytrain.config import RunConfig


def checkpoint_config(cfg: RunConfig, kind):
    """Ray's (``kind``: Train's or Tune's ``CheckpointConfig``) retention for ``cfg``: ``train.keep_checkpoints``
    ranked by ``train.keep_best``'s metric (Ray keeps the newest too, which resume uses), or the newest ones."""
    from raytrain.train.checkpoint import best_metric

    rank = best_metric(cfg)
    if rank is None:
        return kind(num_to_keep=cfg.train.keep_checkpoints)
    return kind(num_to_keep=cfg.train.keep_checkpoints, checkpoint_score_attribute=rank[0],
                checkpoint_score_order=rank[1])  # fmt: skip


def picked(cfg: RunConfig, result, storage: str) -> tuple[str | None, str | None, str]:
    """The checkpoint a finished run stands for (``train.keep_best``) from Ray's result: (its location, the newest's
    location, how it was picked)."""
    from raytrain.train.checkpoint import best_metric, describe_pick, pick_best

    if result.checkpoint is None:
        return None, None, ""
    last = checkpoint_location(storage, result.checkpoint)
    rank = best_metric(cfg)
    candidates = list(getattr(result, "best_checkpoints", None) or [])
    candidates.sort(key=lambda cm: float((cm[1] or {}).get("step", 0)))  # oldest first: a tie goes to the newest
    got = pick_best(candidates, rank)
    if got is None:
        return last, last, describe_pick(result.metrics, None)
    ckpt, metrics = got
    return checkpoint_location(storage, ckpt), last, describe_pick(metrics, rank)


def record_checkpoint(run, location: str, last: str | None = None, how: str = "", register: str | None = None
                      ) -> None:  # fmt: skip
    """The run's weights artifact (``weights/model.pt``), its MLflow model (``model/``, registered as ``register``
    when given: :mod:`raytrain.models`) and its tags: ``raytrain.checkpoint`` (``location``, the one
    ``train.keep_best`` picked, ``how``), ``raytrain.checkpoint_last`` (the newest). The checkpoint is read through
    its location, wherever the storage is (S3, NFS, a local folder)."""
    import tempfile

    from raytrain.files import load_torch
    from raytrain.models import log_model
    from raytrain.train.checkpoint import MODEL

    if run and locations.is_file(locations.join(location, MODEL)):
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp, MODEL)
            local.write_bytes(locations.read_bytes(locations.join(location, MODEL)))
            run.log_artifact(local, "weights")
            log_model(run, load_torch(local, "a raytrain checkpoint"), register)
    run.set_tags({"raytrain.checkpoint": locations.display(location), "raytrain.checkpoint_pick": how,
                  "raytrain.checkpoint_last": locations.display(last or location)})  # fmt: skip


def checkpoint_location(storage: str, checkpoint: ray.train.Checkpoint) -> str:
    """The location of a Ray checkpoint of a run stored at ``storage``: ``checkpoint.path`` is a path on the storage's
    filesystem (``bucket/key``, without the scheme and options of ``s3://bucket/key?endpoint_override=...``), so it
    is re-expressed under the storage location, which every later reader opens."""
    _, root = locations.resolve(storage)
    path = checkpoint.path.rstrip("/")
    if not path.startswith(root.rstrip("/") + "/"):
        return path  # not under the run's storage (cannot happen with Ray's layout): as Ray gives it
    return locations.join(storage, path[len(root.rstrip("/")) + 1 :])
