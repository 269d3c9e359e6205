"""A torch process group that listens on nothing beyond loopback, for runs on the embedded local Ray.

Ray's ``TorchConfig`` meets through a ``TCPStore`` that rank 0 serves on every interface (``::``), and gloo / NCCL
open their own sockets on the interface the host name resolves to: during a 2-worker run on the embedded Ray that was
the one listener not on 127.0.0.1. On a Ray whose every node is at 127.0.0.1 every worker is on this machine, so here
the ranks meet through a ``FileStore`` in a private (0700) temporary folder, and gloo / NCCL are pointed at the
loopback interface (``GLOO_SOCKET_IFNAME`` / ``NCCL_SOCKET_IFNAME``, unless the user set them). Runs on a cluster
keep Ray's own ``TorchConfig``: their ranks may be on other machines.

Built on Ray's public ``TorchConfig`` and its developer API ``ray.train.backend.Backend`` (the documented way to
give a trainer its own process-group set-up); it sets the variables torchrun and Ray's own backend set (``RANK``,
``LOCAL_RANK``, ...). ``tests/test_bad_input.py`` runs it and fails if it listens beyond loopback; its control fails
when Ray's own backend stops meeting through ``env://`` or torch's rendezvous stops serving every interface (then
this module is no longer needed).
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import ray
import ray.train
import torch.distributed as dist
from ray.train.backend import Backend
from ray.train.torch import TorchConfig

IFNAME_VARS = ("GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME")
SHUTDOWN_TIMEOUT_S = 30


def loopback_interface() -> str | None:
    """The name of the interface that carries 127.0.0.1 (``lo`` on Linux, ``lo0`` on macOS), or None."""
    import psutil

    for name, addrs in psutil.net_if_addrs().items():
        if any(a.family == socket.AF_INET and a.address == "127.0.0.1" for a in addrs):
            return name
    return None


def _prepare_worker(interface: str | None) -> None:
    """On each worker: the collectives on ``interface``; torchrun's rank variables (as Ray's own backend sets them)."""
    for var in IFNAME_VARS:
        if interface and var not in os.environ:
            os.environ[var] = interface
    ctx = ray.train.get_context()
    os.environ.update({"LOCAL_RANK": str(ctx.get_local_rank()), "LOCAL_WORLD_SIZE": str(ctx.get_local_world_size()),
                       "NODE_RANK": str(ctx.get_node_rank()), "RANK": str(ctx.get_world_rank()),
                       "WORLD_SIZE": str(ctx.get_world_size())})  # fmt: skip


def _init_group(backend: str, url: str, rank: int, world: int, timeout_s: int) -> None:
    dist.init_process_group(backend=backend, init_method=url, rank=rank, world_size=world,
                            timeout=timedelta(seconds=timeout_s))  # fmt: skip


def _end_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


class LoopbackTorchBackend(Backend):
    """A torch process group that meets through a file and talks over the loopback interface."""

    share_cuda_visible_devices = True  # as Ray's torch backend: NCCL ranks on a node see each other's GPUs

    def on_start(self, worker_group, backend_config: LoopbackTorchConfig) -> None:
        gpus = worker_group.get_resources_per_worker().get("GPU", 0)
        backend = backend_config.backend or ("nccl" if gpus else "gloo")
        self._folder = tempfile.mkdtemp(prefix="raytrain-pg-")  # mkdtemp: mode 0700, a fresh store per attempt
        url = Path(self._folder, "store").as_uri()
        worker_group.execute(_prepare_worker, loopback_interface())
        n = len(worker_group)
        ray.get([worker_group.execute_single_async(i, _init_group, backend, url, i, n, backend_config.timeout_s)
                 for i in range(n)])  # fmt: skip

    def on_shutdown(self, worker_group, backend_config) -> None:
        try:
            ray.get(worker_group.execute_async(_end_group), timeout=SHUTDOWN_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError:
            pass  # the workers are being torn down anyway; their store folder goes below
        finally:
            shutil.rmtree(getattr(self, "_folder", ""), ignore_errors=True)


@dataclass
class LoopbackTorchConfig(TorchConfig):
    """``TorchConfig`` whose backend meets through a file and talks over loopback (one machine only)."""

    @property
    def backend_cls(self):
        return LoopbackTorchBackend


def torch_config() -> TorchConfig:
    """The process-group config for a run on the connected Ray: loopback-only where Ray itself is on loopback only
    (the embedded local Ray: one machine, see :func:`raytrain.localray.on_loopback_only`), Ray's own otherwise."""
    from raytrain.localray import on_loopback_only

    return LoopbackTorchConfig() if on_loopback_only() else TorchConfig()
