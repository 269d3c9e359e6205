"""Shared fixtures: one local Ray for the whole session, tiny configs, a trained tiny checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from raytrain import localray

HERE = Path(__file__).resolve().parent

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


class Listeners:
    """The listening sockets of this process's tree (Ray's GCS, raylet, agents, the Train controller and workers),
    sampled every ``every`` s in a thread while the block runs: ``samples`` holds, per sample, the number of Ray Train
    workers alive and every listener as (process name, ip, port)."""

    def __init__(self, every: float = 0.5):
        self.every, self.samples = every, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> tuple[int, list[tuple[str, str, int]]]:
        """One sample, read from /proc directly (the listening sockets of /proc/net/tcp{,6}, matched by inode to the
        file descriptors of this tree's processes): ~12 ms, where psutil's per-process tables took ~79."""
        listen = {}  # socket inode -> (ip, port)
        for table, width in (("tcp", 4), ("tcp6", 16)):
            for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
                f = line.split()
                if f[3] == "0A":  # TCP_LISTEN
                    ip, port = f[1].split(":")
                    listen[f[9]] = (_proc_ip(ip, width), int(port, 16))
        kids: dict[int, list[int]] = {}
        names: dict[int, str] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                text = stat.read_text()
            except OSError:
                continue
            pid, rest = int(stat.parent.name), text[text.rindex(")") + 2 :].split()
            names[pid] = text[text.index("(") + 1 : text.rindex(")")]
            kids.setdefault(int(rest[1]), []).append(pid)
        tree, todo = [], [os.getpid()]
        while todo:
            pid = todo.pop()
            tree.append(pid)
            todo += kids.get(pid, [])
        workers, socks = 0, []
        for pid in tree:
            name = names.get(pid, "")
            workers += "RayTrainWo" in name  # comm: the first 15 characters of ray::RayTrainWorker
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
            except OSError:
                continue
            for fd in fds:
                try:
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if link.startswith("socket:[") and link[8:-1] in listen:
                    socks.append((name, *listen[link[8:-1]]))
        return workers, socks

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.samples.append(self.sample())

    def __enter__(self) -> Listeners:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture(scope="session")
def trained_run(ray_local, tmp_path_factory):
    """A tiny 2-worker DnCNN run on the samples (AWGN sigma 25), shared by the tests that need a checkpoint; with the
    sockets that listened while it ran (:class:`Listeners`)."""
    from raytrain.config import load_config
    from raytrain.train.launch import run_training

    work = tmp_path_factory.mktemp("trained")
    cfg = load_config(None, [f"workdir={work}", *TINY, "name=tiny", "train.steps=120", "train.val_every=60",
                             "train.checkpoint_every=60", "train.lr=0.002"])  # fmt: skip
    with Listeners() as listeners:
        res = run_training(cfg)
    return cfg, res, listeners


@pytest.fixture(scope="session")
def trained(trained_run):
    """(config, result) of :func:`trained_run`."""
    return trained_run[:2]


class Background:
    """Compute-only fixtures run as background processes at the lowest CPU priority, started when the suite is
    collected. The Ray tests leave about a quarter of the two cores idle while they wait on actors starting and
    polling; a process at the lowest priority soaks that up (Linux gives nice 19 ~1.5% of a busy core; the Ray tests
    still ran 10-20% slower beside it, measured, against 3.4 minutes saved). Their tests are moved to the end of the
    run, so the job has the whole suite to finish in. A job prints its result as JSON."""

    JOBS = {  # name: (fixture, command)
        "fidelity": ("learned", [sys.executable, str(HERE / "test_senm_fidelity.py")]),
        "lir": ("recipe_run", [sys.executable, str(HERE / "test_lir.py")]),
        "compile": ("compile_run", [sys.executable, str(HERE / "test_precision.py")]),
    }

    def __init__(self) -> None:
        self.t0 = time.time()  # the session's start (the configure hook)
        self.procs: dict[str, tuple[subprocess.Popen, float]] = {}
        self.ended: dict[str, tuple[float, str, str]] = {}  # name -> (when it ended, its stdout, its stderr)
        self.readers: dict[str, threading.Thread] = {}
        self.waited: dict[str, float] = {}  # name -> seconds a test waited for it
        self.results: dict[str, object] = {}

    def start(self, name: str) -> None:
        proc = subprocess.Popen(self.JOBS[name][1], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=_lowest_priority)  # fmt: skip
        self.procs[name] = (proc, time.time())

        def read() -> None:  # the job's output, and when it ended (for the summary: did the suite wait for it?)
            out, err = proc.communicate()
            self.ended[name] = (time.time(), out, err)

        self.readers[name] = threading.Thread(target=read, daemon=True)
        self.readers[name].start()

    def result(self, name: str, timeout: float = 900):
        if name not in self.results:
            if name not in self.procs:
                self.start(name)
            proc, _ = self.procs[name]
            t = time.time()
            self.readers[name].join(timeout)
            self.waited[name] = time.time() - t
            if name not in self.ended:
                raise RuntimeError(f"background job {name} still running after {timeout:.0f} s")
            _, out, err = self.ended[name]
            if proc.returncode != 0:
                raise RuntimeError(f"background job {name} failed (exit {proc.returncode}): {err[-3000:]}")
            self.results[name] = json.loads(out.strip().splitlines()[-1])
        return self.results[name]

    def summary(self) -> list[str]:
        """A line per job: when it started and ended in the session, and how long its tests waited for it."""
        lines = []
        for name, (_, started) in self.procs.items():
            end = self.ended.get(name)
            done = f"ended at {end[0] - self.t0:.0f} s" if end else "still running"
            lines.append(f"background job {name}: started at {started - self.t0:.0f} s, {done} of the session; "
                         f"its tests waited {self.waited.get(name, 0.0):.0f} s for it")  # fmt: skip
        return lines

    def stop(self) -> None:
        for proc, _ in self.procs.values():
            if proc.poll() is None:
                proc.kill()
        for reader in self.readers.values():
            reader.join(10)


def _lowest_priority() -> None:
    """In the child before it runs: SCHED_IDLE and nice 19, in a session of its own whose autogroup is niced too.
    With the kernel's autogroups on (sched_autogroup_enabled), CPU is shared between sessions first: a niced process
    in pytest's session would still get the share of pytest's (mostly waiting) session, half the machine against
    Ray's processes."""
    os.setsid()
    os.nice(19)
    try:  # SCHED_IDLE: runs only on a core nothing else wants, preempted at once by any task that wakes there
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):  # not Linux: nice 19 alone
        pass
    try:
        Path("/proc/self/autogroup").write_text("19")
    except OSError:  # no autogroups (then nice alone does it)
        pass


def _proc_ip(hexip: str, width: int) -> str:
    """An address of /proc/net/tcp{,6} (little-endian 32-bit words in hex) as text."""
    import ipaddress

    raw = bytes.fromhex(hexip)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    if width == 4:
        return str(ipaddress.IPv4Address(words))
    ip = ipaddress.IPv6Address(words)
    return f"::ffff:{ip.ipv4_mapped}" if ip.ipv4_mapped else str(ip)  # as psutil writes a mapped IPv4 address


BACKGROUND = pytest.StashKey[Background]()


def pytest_configure(config):
    config.stash[BACKGROUND] = Background()


@pytest.hookimpl(trylast=True)  # after -k / -m deselected what does not run: a deselected test starts no job
def pytest_collection_modifyitems(session, config, items):
    """Start the background jobs the selected tests need and move those tests to the end."""
    if config.option.collectonly:
        return
    bg = config.stash[BACKGROUND]
    for name, (fixture, _) in Background.JOBS.items():
        users = [i for i in items if fixture in getattr(i, "fixturenames", ())]
        if users:
            items[:] = [i for i in items if i not in users] + users
            bg.start(name)


def pytest_terminal_summary(terminalreporter, config):
    for line in config.stash[BACKGROUND].summary():
        terminalreporter.write_line(line)


def pytest_unconfigure(config):
    config.stash[BACKGROUND].stop()
