"""The embedded local Ray that ``train``, ``tune``, ``ablate``, ``pipeline``, ``synthesize --ray`` and the demo start
when no cluster address is given: it listens on loopback only.

On Linux Ray picks the machine's routable address as the node IP and binds its gRPC servers (GCS, raylets, every
worker and actor), agents and metrics endpoints on it or on all interfaces. Ray decides at import time, from
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` (the switch it uses on laptops): ``0`` makes the node IP 127.0.0.1 and every
server bind there. :func:`prefer_loopback` sets it, and must run before ``import ray`` in the process that starts the
local Ray (the CLI does, the test suite's conftest does); :func:`start` checks the outcome and says so when it
could not be had. A process that connects to a cluster (``--address``, ``RAY_ADDRESS``, ``address:`` in the config)
never sets it: remote workers must reach the driver.
"""

from __future__ import annotations

import atexit
import json
import os
import stat
import sys
import tempfile
from pathlib import Path

LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def prefer_loopback() -> bool:
    """Ask Ray for a loopback-only node; returns whether it can still take effect (``ray`` not imported yet)."""
    os.environ.setdefault(LOOPBACK_ENV, "0")
    return "ray" not in sys.modules


def start(num_cpus: int, resources: dict | None = None) -> str:
    """``ray.init`` of a local instance, dashboard on 127.0.0.1; returns the node IP (a warning when not loopback).
    Its console output follows :mod:`raytrain.console` (quiet unless verbose)."""
    import ray

    from raytrain.console import ray_init_kwargs

    reap_stale()
    ray.init(num_cpus=num_cpus, include_dashboard=True, dashboard_host="127.0.0.1", resources=resources or {},
             **ray_init_kwargs())  # fmt: skip
    ip = ray.util.get_node_ip_address()
    if ip not in LOOPBACK:
        print(f"[raytrain] warning: the embedded Ray's node IP is {ip}, not loopback: Ray was imported before raytrain "
              f"could ask for 127.0.0.1, so its servers are reachable from the network; start Python with "
              f"{LOOPBACK_ENV}=0", file=sys.stderr)  # fmt: skip
    protect_token()
    record()
    return ip


# ------------------------------------------------------------------------- processes of a killed driver's Ray
def on_loopback_only() -> bool:
    """Whether the connected Ray is one machine reachable on loopback only (every alive node at 127.0.0.1): then every
    actor and worker shares this machine's files and its loopback interface."""
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    return bool(nodes) and all(n.get("NodeManagerAddress") == "127.0.0.1" for n in nodes)


def _registry() -> Path:
    return Path(tempfile.gettempdir()) / f"raytrain-local-ray-{os.getuid()}"


def _ident(p) -> list:
    return [p.pid, round(p.create_time(), 2)]


def record() -> None:
    """Note this driver's local Ray processes (pid + start time) so that the next start can end them if this driver is
    killed before ``ray.shutdown`` (SIGKILL: Ray's dashboard and runtime-env agents outlive it). Removed at exit."""
    import psutil

    me = psutil.Process()
    procs = [_ident(p) for p in me.children(recursive=True) if p.is_running()]
    folder = _registry()
    folder.mkdir(mode=0o700, exist_ok=True)
    path = folder / f"{me.pid}.json"
    path.write_text(json.dumps({"driver": _ident(me), "procs": procs}))
    atexit.register(_shutdown, path, procs)


def _shutdown(path: Path, procs: list) -> None:
    """At the driver's exit: stop Ray, then end whatever of its processes outlived ``ray.shutdown`` (its dashboard and
    runtime-env agents do when the driver exits with threads still running), and drop the record."""
    import ray

    ray.shutdown()
    _end(procs, grace=2.0)
    path.unlink(missing_ok=True)


def reap_stale() -> int:
    """End the processes of local Rays whose driver is gone; returns how many were ended."""

    ended = 0
    folder = _registry()
    for path in folder.glob("*.json") if folder.is_dir() else []:
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            path.unlink(missing_ok=True)
            continue
        if _alive(rec["driver"]):
            continue
        ended += _end(rec["procs"])
        path.unlink(missing_ok=True)
    if ended:
        print(f"[raytrain] ended {ended} process(es) left by a killed run's local Ray", file=sys.stderr)
    return ended


def _end(idents: list, grace: float = 0.0) -> int:
    """SIGKILL those of the recorded processes still running (after ``grace`` seconds to exit on their own; Ray's
    agents ignore SIGTERM); returns how many were killed."""
    import psutil

    procs = []
    for ident in idents:
        if _alive(ident):
            try:
                procs.append(psutil.Process(ident[0]))
            except psutil.Error:
                pass
    left = psutil.wait_procs(procs, timeout=grace)[1] if grace and procs else procs
    killed = 0
    for p in left:
        try:
            p.kill()
            killed += 1
        except psutil.Error:
            pass
    return killed


def token_path() -> Path:
    """Where Ray keeps its auth token: ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``."""
    return Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")


def _alive(ident: list) -> bool:
    """Whether the process (pid, start time) still runs: a reused pid has another start time."""
    import psutil

    try:
        p = psutil.Process(ident[0])
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE and abs(p.create_time() - ident[1]) < 0.05
    except psutil.Error:
        return False


def protect_token(path: Path | None = None) -> None:
    """Ray's auth token file readable by its owner only (Ray writes it 0644)."""
    p = path or token_path()
    try:
        if p.is_file() and p.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            p.chmod(0o600)
    except OSError:  # not ours to change: say so once
        print(f"[raytrain] warning: {p} is readable by other users and could not be made private", file=sys.stderr)
