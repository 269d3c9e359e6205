"""What a run on a cluster needs from every node, checked on the driver before any worker starts, each failure one
line naming the node, the location and the fix.

On one machine the driver, every worker and every Ray Data task share a disk; on a cluster they do not. A node is
*another* node when it is alive and is not the one the driver is attached to; a Ray with no other node is one machine
(the embedded Ray, ``ray start --head`` alone), where every check here passes at once.

- The MLflow store must be a server: a ``sqlite:///`` or file store opened on another node is an empty database of
  that node's own (``Run ... not found``).
- Ray's storage (``storage_path``) must be one every node writes: a URI, checked by writing a probe from every node,
  the driver's included (a node's Ray processes have that node's environment: one started without credentials cannot
  write, whatever the driver holds), or a folder every node mounts, checked by a marker the driver writes and every
  node must see.
- Files the workers or Ray Data's tasks read where they run (a streamed data folder, a ``train.resume_from``
  folder, a synthetic pair set) must be visible to every node that can run them.
- The cluster must hold the worker group *and* the CPUs Ray Data's patch streams need beside it (a group that takes
  every CPU starves the streams into a silent hang); ``scaling.wait_for_nodes_s`` waits for an autoscaler to add them.
"""

from __future__ import annotations

import os
import time
import uuid

import ray

from raytrain import locations
from raytrain.errors import RaytrainError, first_line

NODE_CHECK_TIMEOUT_S = 60.0


def alive_nodes() -> list[dict]:
    return [n for n in ray.nodes() if n.get("Alive")]


def other_nodes() -> list[dict]:
    """The alive nodes of the connected Ray other than the driver's (``ray.nodes()`` entries); none without a Ray."""
    if not ray.is_initialized():
        return []
    me = ray.get_runtime_context().get_node_id()
    return [n for n in alive_nodes() if n["NodeID"] != me]


def node_name(node: dict) -> str:
    return f"node {node.get('NodeManagerAddress', '?')} ({node['NodeID'][:8]})"


def compute_nodes(nodes: list[dict]) -> list[dict]:
    """The nodes that can run a worker or a Ray Data task (some CPU or GPU)."""
    return [n for n in nodes if n.get("Resources", {}).get("CPU", 0) > 0 or n.get("Resources", {}).get("GPU", 0) > 0]


def on_each(nodes: list[dict], fn, *args) -> dict[str, object]:
    """``fn(*args)`` on every node (a zero-CPU task pinned to it): node name -> its result; a node that does not answer
    within :data:`NODE_CHECK_TIMEOUT_S` is one line naming it."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    task = ray.remote(num_cpus=0, max_retries=0)(fn)
    refs = {node_name(n): task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
            .remote(*args) for n in nodes}  # fmt: skip
    out = {}
    for name, ref in refs.items():
        try:
            out[name] = ray.get(ref, timeout=NODE_CHECK_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError:
            raise RaytrainError(f"{name} did not answer a check within {NODE_CHECK_TIMEOUT_S:.0f} s") from None
        except ray.exceptions.RayError as exc:
            raise RaytrainError(f"{name}: the check failed ({first_line(exc, 200)})") from None
    return out


def check_tracking(uri: str | None, nodes: list[dict]) -> None:
    """A file-based MLflow store (SQLite, ``file:``) is refused when the run has workers on other nodes."""
    if uri is None or not nodes or uri.startswith(("http://", "https://", "databricks")):
        return
    raise RaytrainError(f"tracking store {uri} is a file on this machine, which the workers on {node_name(nodes[0])} "
                        "cannot reach: set tracking.uri (or MLFLOW_TRACKING_URI) to an MLflow server, e.g. "
                        "`mlflow server --host 0.0.0.0 --port 5000` on a machine every node reaches")  # fmt: skip


def _probe_write(loc: str, what: str) -> str | None:
    try:
        locations.check_writable(loc, what)
    except RaytrainError as exc:
        return str(exc)
    return None


def _missing(paths: list[str]) -> list[str]:
    return [p for p in paths if not os.path.exists(p)]


def check_storage(storage: str, nodes: list[dict], what: str = "storage_path") -> None:
    """Ray's storage written from the driver, and from every other node: a URI by a probe file on each node, a local
    folder by a marker the driver writes there and every node must see (a folder every node mounts)."""
    locations.check_writable(storage, what)
    if not nodes:
        return
    if locations.is_uri(storage):
        # every node, the driver's too: Ray's processes there (Train's controller) have their node's environment,
        # not the driver's, and may lack its credentials
        for name, err in on_each(alive_nodes(), _probe_write, storage, what).items():
            if err:
                raise RaytrainError(f"{name}: {err}")
        return
    marker = locations.join(storage, f".raytrain-shared-{uuid.uuid4().hex[:12]}")
    locations.write_bytes(marker, b"raytrain")
    try:
        for name, missing in on_each(nodes, _missing, [marker]).items():
            if missing:
                raise RaytrainError(
                    f"{what} {storage} is on this machine's disk only ({name} does not see it): set {what} to a "
                    "URI every node writes (s3://bucket/runs, gs://...) or to a folder every node mounts (NFS)"
                )  # fmt: skip
    finally:
        locations.remove(marker)


STREAM_FIX = ", or set data.stream: false to read the images on the driver"


def check_visible(paths: list[str], what: str, nodes: list[dict], also: str = "") -> None:
    """Local files that the workers, Ray Data's tasks or Tune's trials read on their own node: every compute node
    must see them (``also``: a further fix the message offers)."""
    local = sorted({p for p in paths if p and not locations.is_uri(p)})
    if not local or not nodes:
        return
    for name, missing in on_each(compute_nodes(nodes), _missing, local).items():
        if missing:
            raise RaytrainError(
                f"{what} {missing[0]} is not readable on {name} ({len(missing)} of {len(local)} files missing "
                "there): put it where every node reads it (a URI such as s3://bucket/data, or a folder every node "
                f"mounts){also}"
            )  # fmt: skip


def wait_for(want: dict[str, float], wait_s: float) -> dict[str, float]:
    """The cluster's resources once they hold ``want`` or ``wait_s`` has passed (an autoscaler is asked for them)."""
    have = ray.cluster_resources()
    if wait_s <= 0 or all(have.get(k, 0.0) >= v for k, v in want.items()):
        return have
    try:
        from ray.autoscaler.sdk import request_resources

        request_resources(bundles=[{k: v for k, v in want.items() if v > 0}])
    except Exception:  # noqa: BLE001 - no autoscaler here: waiting still lets nodes join by hand
        pass
    print(f"[raytrain] waiting up to {wait_s:.0f} s for the cluster to hold "
          f"{', '.join(f'{k} {v:g}' for k, v in want.items())}", flush=True)  # fmt: skip
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        time.sleep(min(5.0, max(0.1, deadline - time.monotonic())))
        have = ray.cluster_resources()
        if all(have.get(k, 0.0) >= v for k, v in want.items()):
            break
    return have


def worker_files(cfg) -> list[str]:
    """Files the workers read where they run: weight files, ``method.init_from``'s and ``train.resume_from``'s
    checkpoints."""
    from raytrain.config import weight_files
    from raytrain.train.checkpoint import STATE, find_inference_file

    out = list(weight_files(cfg).values())
    if getattr(cfg.method, "init_from", None):
        out.append(find_inference_file(cfg.method.init_from))
    if cfg.train.resume_from:
        out.append(locations.join(cfg.train.resume_from, STATE))
    return out


def check_cluster(cfg, tracking_uri: str | None) -> list[dict]:
    """The checks a run makes before its data are read: tracking store, storage, the workers' own files. Returns the
    other nodes (none on one machine) for :func:`check_data`."""
    from raytrain.train.preflight import storage_path

    nodes = other_nodes()
    check_tracking(tracking_uri, nodes)
    check_storage(storage_path(cfg), nodes)
    check_visible(worker_files(cfg), "the file", nodes)
    return nodes


def check_data(collection, nodes: list[dict]) -> None:
    """The files of a streamed collection (Ray Data's crop tasks read them where they run) on every compute node."""
    from raytrain.data.stored import source_files

    paths = [p for d in collection.domains.values() for imgs in (d.clean, d.noisy) for p in source_files(imgs or [])]
    check_visible(paths, "the data file", nodes, STREAM_FIX)


def data_files(cfg, per_root: int = 64) -> list[str]:
    """Up to ``per_root`` files of each local folder ``cfg.data`` reads (``source``, ``noisy_source``, ``clean_only``,
    ``noisy_only``, ``synthetic``, a dataset's ``KIND:PATH``): what a process that loads the run's data on its own
    node (a Tune trial) must find there."""
    from raytrain.train.preflight import data_roots

    out = []
    for _, root in data_roots(cfg):
        path = locations.local_path(root)
        if locations.is_uri(path) or not os.path.exists(path):
            continue  # a URI every node reads; a missing folder is the data loader's one line
        if os.path.isfile(path):
            out.append(path)
            continue
        found = []
        for top, dirs, files in os.walk(path):
            dirs.sort()
            found += [os.path.join(top, f) for f in sorted(files)]
            if len(found) >= per_root:
                break
        out += found[:per_root]
    return out
