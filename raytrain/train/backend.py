"""A torch process group that listens on nothing beyond loopback, for runs on the embedded local Ray.

Ray's ``TorchConfig`` meets through a ``TCPStore`` that rank 0 serves on every interface (``::``), and gloo / NCCL
open their own sockets on the interface the host name resolves to: during a 2-worker run on the embedded Ray that was
the one listener not on 127.0.0.1. On the embedded Ray every worker is on this machine, so here the ranks meet through
a ``FileStore`` in a private (0700) temporary folder, and gloo / NCCL are pointed at the loopback interface
(``GLOO_SOCKET_IFNAME`` / ``NCCL_SOCKET_IFNAME``, unless the user set them). Runs on a cluster (``address`` set) keep
Ray's own ``TorchConfig``: their ranks may be on other machines.

Ray touch points, all private to Ray 2.60 and kept in this module: ``_TorchBackend`` (its shutdown is reused),
``_setup_torch_process_group`` and ``_set_torch_distributed_env_vars`` (the calls Ray's own backend makes, with a
``file://`` init method instead of ``env://``). ``tests/test_bad_input.py`` runs both backends and fails if this one
listens beyond loopback or if Ray's stops doing so (then this module is no longer needed).
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

import ray
from ray.train.torch import TorchConfig
from ray.train.torch.config import _set_torch_distributed_env_vars, _setup_torch_process_group, _TorchBackend

IFNAME_VARS = ("GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME")


def loopback_interface() -> str | None:
    """The name of the interface that carries 127.0.0.1 (``lo`` on Linux, ``lo0`` on macOS), or None."""
    import psutil

    for name, addrs in psutil.net_if_addrs().items():
        if any(a.family == socket.AF_INET and a.address == "127.0.0.1" for a in addrs):
            return name
    return None


def _use_interface(name: str | None) -> None:
    for var in IFNAME_VARS:
        if name and var not in os.environ:
            os.environ[var] = name


class LoopbackTorchBackend(_TorchBackend):
    """Ray's torch backend with a file rendezvous and the collectives on the loopback interface."""

    def on_start(self, worker_group, backend_config: LoopbackTorchConfig) -> None:
        gpus = worker_group.get_resources_per_worker().get("GPU", 0)
        backend = backend_config.backend or ("nccl" if gpus else "gloo")
        self._folder = tempfile.mkdtemp(prefix="raytrain-pg-")  # mkdtemp: mode 0700, a fresh store per attempt
        url = Path(self._folder, "store").as_uri()
        worker_group.execute(_use_interface, loopback_interface())
        worker_group.execute(_set_torch_distributed_env_vars)
        n = len(worker_group)
        ray.get([worker_group.execute_single_async(i, _setup_torch_process_group, backend=backend, world_rank=i,
                                                   world_size=n, init_method=url, timeout_s=backend_config.timeout_s)
                 for i in range(n)])  # fmt: skip

    def on_shutdown(self, worker_group, backend_config) -> None:
        try:
            super().on_shutdown(worker_group, backend_config)
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
