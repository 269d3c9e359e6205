"""Where the one training loop runs, and the five calls it makes to Ray there.

- :class:`TrainSession`: a Ray Train worker of a ``TorchTrainer`` (any number of workers; DDP, a process group).
- :class:`TrialSession`: a one-worker Tune trial's own process. No second actor, no worker group, no process group:
  the trial starts training in seconds instead of tens of seconds (Ray's guidance for single-worker trials). The loop,
  the method, checkpoints, validation, reporting and MLflow are the same code either way.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import ray
import ray.train
import ray.train.torch
import torch


class TrainSession:
    """A worker of a ``TorchTrainer``: rank and world from Ray Train, DDP-wrapped nets, a split of each stream."""

    def __init__(self) -> None:
        ctx = ray.train.get_context()  # Ray: who am I in the worker group
        self.rank, self.world = ctx.get_world_rank(), ctx.get_world_size()
        self.device = ray.train.torch.get_device()  # Ray: cuda:<local rank> on GPU workers, cpu otherwise
        self.prepare = ray.train.torch.prepare_model  # Ray: DDP-wraps each net

    def shard(self, name: str):
        return ray.train.get_dataset_shard(name)  # Ray: this worker's split of the domain's patch dataset

    def checkpoint(self) -> ray.train.Checkpoint | None:
        return ray.train.get_checkpoint()  # Ray: the latest reported checkpoint of this run, if any

    def report(self, metrics: dict[str, Any], directory: str | None = None) -> None:
        """A collective: every rank reports at the same steps; every rank's files merge into one checkpoint."""
        ckpt = ray.train.Checkpoint.from_directory(directory) if directory else None
        ray.train.report(metrics, checkpoint=ckpt)


class TrialSession:
    """The one worker of a Tune trial, in the trial's process: its reports go straight to Tune.

    As for trainer-based trials (``ValidationReportCallback``), Tune sees only the reports that carry validation
    metrics (the searched metric is in every result, and ASHA counts validations). A checkpoint reported between
    validations travels with the next validation report (the loop always validates at its last step)."""

    def __init__(self, datasets: dict[str, ray.data.Dataset], use_gpu: bool = False):
        self.rank, self.world = 0, 1
        self.device = torch.device("cuda:0" if use_gpu and torch.cuda.is_available() else "cpu")
        self.prepare = None  # no DDP: the nets are moved to the device
        self.datasets = datasets
        self._keep = Path(tempfile.mkdtemp(prefix="raytrain-trial-"))
        self._pending: Path | None = None

    def shard(self, name: str):
        return self.datasets[name].iterator()  # Ray Data: the whole stream, no split coordinator

    def checkpoint(self):
        from ray import tune

        return tune.get_checkpoint()  # Ray Tune: the trial's latest checkpoint (a resumed sweep), if any

    def report(self, metrics: dict[str, Any], directory: str | None = None) -> None:
        from ray import tune

        if directory is not None:  # the loop deletes its directory when this returns: keep a copy until reported
            if self._pending is not None:
                shutil.rmtree(self._pending, ignore_errors=True)
            self._pending = Path(shutil.copytree(directory, self._keep / f"step{int(metrics['step'])}"))
        if not any(k.startswith("val_") for k in metrics):
            return
        ckpt = tune.Checkpoint.from_directory(str(self._pending)) if self._pending else None
        tune.report(metrics, checkpoint=ckpt)  # Ray Tune persists the checkpoint into the trial's storage
        if self._pending is not None:
            shutil.rmtree(self._pending, ignore_errors=True)
            self._pending = None

    def close(self) -> None:
        shutil.rmtree(self._keep, ignore_errors=True)
