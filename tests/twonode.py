"""A two-node Ray cluster on one machine whose second node cannot see the driver's files (tests/test_two_node.py; by
hand: ``python tests/twonode.py`` starts one and prints how to use it, Ctrl-C stops it).

- A network namespace of its own whose only interface is loopback (``unshare --net``, ``ip link set lo up``): its
  servers are reachable from nowhere else, and every port is free (nothing else lives there).
- In it: an S3 API server (``moto_server``), an MLflow server (SQLite + an artifact folder), a Ray head with 0 CPUs
  at 127.0.0.1 (as KubeRay and Ray's docs advise), and a worker node at 127.0.0.2 with ``worker_cpus`` logical CPUs,
  started in a mount namespace of its own (``unshare --mount``) with an empty tmpfs over the work and data folders:
  it cannot see what the driver writes or reads there.
- Every node and the driver have the same S3 credentials in their environment (as an instance role gives them).
- :meth:`run` runs a command (the CLI, as a user types it) inside the namespace, as the driver on the head's machine.
- :meth:`stop` kills every process in the namespace (all of them are this cluster's) and removes its folder: nothing
  is left running, and ``ray stop`` (which would stop every Ray of the user) is never used.

Needs root (namespaces, tmpfs mounts), ``unshare``, ``nsenter`` and ``ip``: :func:`unavailable` says why not.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
HEAD, WORKER = "127.0.0.1", "127.0.0.2"
GCS, S3, MLFLOW, DASHBOARD = 6379, 9000, 5000, 8265
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "raytrain-test", "AWS_SECRET_ACCESS_KEY": "raytrain-test",
               "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip


# exits 0 when the URL answers at all (any HTTP status: a server is up)
ANSWERS = (
    "import sys, urllib.request, urllib.error\ntry: urllib.request.urlopen(sys.argv[1], timeout=5)\n"
    "except urllib.error.HTTPError: pass\n"
)


def unavailable() -> str | None:
    """Why a two-node cluster cannot be made here (None: it can)."""
    if os.geteuid() != 0:
        return "needs root (network and mount namespaces, tmpfs mounts)"
    for tool in ("unshare", "nsenter", "ip"):
        if not shutil.which(tool):
            return f"needs {tool} (util-linux / iproute2)"
    for tool in ("ray", "mlflow", "moto_server", "raytrain"):
        if not (BIN / tool).exists():
            return f"needs {tool} in {BIN} (pip install -e '.[test]')"
    probe = subprocess.run(["unshare", "--net", "--mount", "true"], capture_output=True, text=True)
    if probe.returncode:
        return f"namespaces are not permitted here ({probe.stderr.strip()[:120]})"
    return None


class TwoNodeCluster:
    def __init__(self, worker_cpus: int = 4):
        self.root = Path(tempfile.mkdtemp(prefix="rt2-", dir="/tmp"))  # short: Ray's socket paths have a limit
        self.work, self.data = self.root / "work", self.root / "data"
        for d in (self.work, self.data, self.root / "artifacts"):
            d.mkdir()
        self.worker_cpus = worker_cpus
        self.procs: list[subprocess.Popen] = []
        self.holder: subprocess.Popen | None = None
        # every node and the driver: token auth (Ray's default for `ray start`), Train's controller polling its
        # workers every 0.25 s (the README's advice for cluster nodes, as raytrain's embedded Ray does)
        self.env = {**os.environ, **CREDENTIALS, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
                    "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1", "RAY_AUTH_MODE": "token",
                    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.25",
                    # MLflow 3's server starts a job runner with Huey consumers (~20 CPU-s over a test module) for
                    # features raytrain does not use
                    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # fmt: skip
        for var in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "RAYTRAIN_VERBOSE"):
            self.env.pop(var, None)
        self.env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)  # "0" refuses a second node

    # ----------------------------------------------------------------------------------------------- addresses
    @property
    def address(self) -> str:
        return f"{HEAD}:{GCS}"

    @property
    def tracking(self) -> str:
        return f"http://{HEAD}:{MLFLOW}"

    def s3(self, bucket_and_prefix: str) -> str:
        """A URI of the cluster's S3 server, e.g. ``s3("runs/train")``."""
        return f"s3://{bucket_and_prefix}?endpoint_override={HEAD}:{S3}&scheme=http"

    @property
    def netns(self) -> str:
        return f"/proc/{self.holder.pid}/ns/net"

    # ----------------------------------------------------------------------------------------------- lifecycle
    def start(self, buckets: tuple[str, ...] = ("runs", "data")) -> TwoNodeCluster:
        try:
            self._start(buckets)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, buckets: tuple[str, ...]) -> None:
        self.holder = subprocess.Popen(["unshare", "--net", "sleep", "infinity"], start_new_session=True)
        time.sleep(0.2)
        subprocess.run(["nsenter", f"--net={self.netns}", "ip", "link", "set", "lo", "up"], check=True)
        log = lambda name: open(self.root / f"{name}.log", "wb")  # noqa: E731
        self._spawn(["moto_server", "-H", HEAD, "-p", str(S3)], log("s3"))
        self._spawn(["mlflow", "server", "--host", HEAD, "--port", str(MLFLOW), "--workers", "1",
                     "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
                     "--artifacts-destination", str(self.root / "artifacts")], log("mlflow"))  # fmt: skip
        self._spawn(["ray", "start", "--head", "--block", f"--node-ip-address={HEAD}", f"--port={GCS}",
                     "--num-cpus=0", "--include-dashboard=true", f"--dashboard-host={HEAD}",
                     f"--dashboard-port={DASHBOARD}", f"--temp-dir={self.root / 'h'}", "--disable-usage-stats"],
                    log("head"))  # fmt: skip
        self._wait_http(f"http://{HEAD}:{S3}/", 60, "the S3 server")
        self._wait_http(f"{self.tracking}/health", 90, "the MLflow server")
        self._wait_http(f"http://{HEAD}:{DASHBOARD}/api/version", 120, "the Ray head")
        # the worker node: its own mount namespace, an empty tmpfs over the folders the driver uses
        hide = " && ".join(f"mount -t tmpfs tmpfs {d}" for d in (self.work, self.data))
        self._spawn(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                     f"{hide} && exec ray start --block --address={self.address} --node-ip-address={WORKER} "
                     f"--num-cpus={self.worker_cpus} --temp-dir={self.root / 'w'} --disable-usage-stats"],
                    log("worker"))  # fmt: skip
        self._wait_nodes(2, 120)
        for bucket in buckets:
            self.run([sys.executable, "-c", "import pyarrow.fs as f; f.S3FileSystem(endpoint_override="
                      f"'{HEAD}:{S3}', scheme='http', allow_bucket_creation=True).create_dir('{bucket}')"],
                     check=True)  # fmt: skip

    def _spawn(self, cmd: list[str], out) -> None:
        self.procs.append(subprocess.Popen(["nsenter", f"--net={self.netns}", *cmd], env=self.env, stdout=out,
                                           stderr=subprocess.STDOUT, start_new_session=True))  # fmt: skip

    def _wait_http(self, url: str, timeout: float, what: str) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            for p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"{p.args[3:6]} exited with {p.returncode} (logs in {self.root})")
            if self.run([sys.executable, "-c", ANSWERS, url], timeout=20).returncode == 0:
                return
            time.sleep(1)
        raise RuntimeError(f"{what} did not answer {url} within {timeout:.0f} s (logs in {self.root})")

    def _wait_nodes(self, n: int, timeout: float) -> None:
        code = ("import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR', log_to_driver=False); "
                "print(sum(1 for x in ray.nodes() if x['Alive']))")  # fmt: skip
        deadline = time.time() + timeout
        while time.time() < deadline:
            got = self.run([sys.executable, "-c", code, self.address], timeout=60)
            if got.stdout.strip().splitlines()[-1:] == [str(n)]:
                return
            time.sleep(2)
        raise RuntimeError(f"the worker node did not join within {timeout:.0f} s (logs in {self.root})")

    def run(self, cmd: list[str], timeout: float = 600, check: bool = False, **kw) -> subprocess.CompletedProcess:
        """``cmd`` inside the cluster's network namespace, as the driver (the head's machine: it sees every folder)."""
        return subprocess.run(["nsenter", f"--net={self.netns}", *cmd], env=self.env, capture_output=True, text=True,
                              timeout=timeout, check=check, **kw)  # fmt: skip

    def python(self, code: str, timeout: float = 120) -> str:
        """Python ``code`` run inside the cluster's network namespace (its servers are reachable only from there);
        returns what it printed, raises with its error output when it fails."""
        r = self.run([sys.executable, "-c", code], timeout=timeout)
        if r.returncode:
            raise RuntimeError(f"python in the cluster failed ({r.returncode}): {r.stderr[-2000:]}")
        return r.stdout

    def kill(self, pid: int) -> None:
        os.kill(pid, signal.SIGKILL)

    def popen(self, cmd: list[str], **kw) -> subprocess.Popen:
        return subprocess.Popen(["nsenter", f"--net={self.netns}", *cmd], env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True, **kw)  # fmt: skip

    def processes(self) -> list[int]:
        """Every process in the cluster's network namespace (all of them are this cluster's)."""
        mine = os.readlink(self.netns) if self.holder and self.holder.poll() is None else None
        out = []
        for pid_dir in Path("/proc").glob("[0-9]*"):
            try:
                if mine and os.readlink(pid_dir / "ns" / "net") == mine and int(pid_dir.name) != self.holder.pid:
                    out.append(int(pid_dir.name))
            except (OSError, ValueError):
                continue
        return out

    def on_worker(self, cmd: list[str]) -> subprocess.CompletedProcess:
        """``cmd`` in the worker node's mount namespace: what that node sees of the disk."""
        return subprocess.run(["nsenter", f"--mount=/proc/{self.worker_process('raylet')}/ns/mnt", *cmd],
                              capture_output=True, text=True, timeout=60)  # fmt: skip

    def worker_process(self, needle: str) -> int:
        """The pid of a process of the worker node (one in its own mount namespace) whose command line holds
        ``needle`` (``raylet``, ``RayTrainWorker``, ...)."""
        here = os.readlink("/proc/self/ns/mnt")
        for pid in self.processes():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="ignore")
                if needle in cmdline and os.readlink(f"/proc/{pid}/ns/mnt") != here:
                    return pid
            except OSError:
                continue
        raise LookupError(f"no process {needle!r} on the worker node")

    def stop(self) -> list[int]:
        """Kill every process of the cluster and remove its folder; returns the pids still alive after (none)."""
        for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            pids = self.processes()
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.time() + grace
            while pids and time.time() < deadline:
                pids = [p for p in pids if Path(f"/proc/{p}").exists() and not _zombie(p)]
                time.sleep(0.2)
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass
        left = [p for p in self.processes() if not _zombie(p)]
        if self.holder:
            self.holder.kill()
            self.holder.wait()
        shutil.rmtree(self.root, ignore_errors=True)
        return left


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return True


if __name__ == "__main__":
    why = unavailable()
    if why:
        sys.exit(f"twonode: {why}")
    c = TwoNodeCluster().start()
    print(f"cluster up in {c.root}: Ray {c.address}, MLflow {c.tracking}, S3 {c.s3('runs/x')}")
    print(f"run commands inside: nsenter --net={c.netns} env {' '.join(f'{k}={v}' for k, v in CREDENTIALS.items())} "
          f"PATH={BIN}:$PATH raytrain ...   (worker node hides {c.work} and {c.data})")  # fmt: skip
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        print(f"stopped; left running: {c.stop()}")
