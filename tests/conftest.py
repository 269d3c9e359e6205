"""Shared fixtures: one local Ray for the whole session, tiny configs, a trained tiny checkpoint."""

from __future__ import annotations

import os

import pytest

from raytrain import localray

os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.25")  # as raytrain's embedded Ray (train/launch.py)
os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")  # as raytrain's embedded Ray (train/launch.py)
os.environ.setdefault("RAY_DEDUP_LOGS", "1")
localray.prefer_loopback()  # the session's Ray listens on 127.0.0.1 only, as raytrain's own embedded Ray does

# Tiny everything: 5-layer 16-channel DnCNN, 32 px patches, images shrunk to 128 px.
TINY = [
    "method.depth=5", "method.width=16", "train.batch_size=8", "data.patches.size=32", "data.max_size=128",
    "data.val_crop=64", "train.log_every=10", "scaling.num_workers=2", "data.resample_noise=true",
]  # fmt: skip


@pytest.fixture(scope="session")
def ray_local():
    """One embedded Ray for every test that needs it. 8 logical CPUs: 2 Train workers (or 2 trials of 1) leave a whole
    CPU to each patch dataset, as raytrain's own embedded Ray does (Ray Data gives each dataset leftover // datasets
    CPUs; a dataset with 0 never runs a task and its coordinator spins)."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=8, include_dashboard=False, log_to_driver=False, resources={"trial_slot": 64})
    yield ray
    ray.shutdown()


@pytest.fixture
def tiny(tmp_path):
    """Build a validated tiny config in a private workdir: ``tiny("train.steps=40", ...)``."""
    from raytrain.config import load_config

    def make(*extra: str):
        return load_config(None, [f"workdir={tmp_path / 'runs'}", *TINY, *extra])

    return make


@pytest.fixture(scope="session")
def trained(ray_local, tmp_path_factory):
    """A tiny 2-worker DnCNN run on the samples (AWGN sigma 25), shared by the tests that need a checkpoint."""
    from raytrain.config import load_config
    from raytrain.train.launch import run_training

    work = tmp_path_factory.mktemp("trained")
    cfg = load_config(None, [f"workdir={work}", *TINY, "name=tiny", "train.steps=120", "train.val_every=60",
                             "train.checkpoint_every=60", "train.lr=0.002"])  # fmt: skip
    return cfg, run_training(cfg)
