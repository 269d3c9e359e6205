"""A real cluster: `ray start --head` on 127.0.0.1 (own temp dir, free ports, the dashboard for the job API) and an
MLflow server on 127.0.0.1, both started here and stopped here (only these processes: never `ray stop`, which would
stop every Ray of the user). A tiny training job spec is submitted with `raytrain submit --wait`; its MLflow run must
hold metrics. Also: a job that fails shows its log's tail and exits 1; a bad spec submits nothing."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from raytrain.cli import main

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float, proc: subprocess.Popen, what: str) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            tail = proc.stderr.read().decode(errors="replace")[-2000:] if proc.stderr else ""
            raise RuntimeError(f"{what} exited with {proc.returncode}: {tail}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 - our own local server
                if r.status in (200, 401):
                    return
        except OSError as exc:
            if getattr(exc, "code", None) == 401:
                return
        time.sleep(1)
    raise RuntimeError(f"{what} did not answer {url} within {timeout:.0f} s")


def stop_group(proc: subprocess.Popen, marker: str | None = None, grace: float = 20) -> None:
    """SIGTERM the process group we started (then SIGKILL after ``grace`` s), and any stray process whose command line
    names our private temp dir: exactly our cluster, nothing else of the user's."""
    for sig, wait_s in ((signal.SIGTERM, grace), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(wait_s)
            break
        except subprocess.TimeoutExpired:
            continue
    if marker:
        for pid_dir in Path("/proc").glob("[0-9]*"):
            try:
                if marker in (pid_dir / "cmdline").read_bytes().decode(errors="ignore"):
                    os.kill(int(pid_dir.name), signal.SIGKILL)
            except (OSError, ValueError):
                continue


@pytest.fixture(scope="module")
def cluster():
    tmp = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp"))  # short: Ray's socket paths have a length limit
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "RAY_USAGE_STATS_ENABLED": "0",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }  # MLflow's job runner (Huey consumers, ~20 CPU-s): unused
    gcs, dash, mlf = free_port(), free_port(), free_port()
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={gcs}",
         "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
         f"--temp-dir={tmp / 'ray'}", "--num-cpus=3", "--disable-usage-stats",
         f"--min-worker-port={free_port()}", "--max-worker-port=0",
         # every port of our own: the suite's embedded Ray (the shared fixture) holds the default agent ports, and
         # a job agent that cannot bind leaves the head answering "No available agent to submit job"
         *(f"--{flag}={free_port()}" for flag in ("dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                                                  "runtime-env-agent-port", "metrics-export-port", "node-manager-port",
                                                  "object-manager-port", "ray-client-server-port"))],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    mlflow = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(mlf), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp / 'mlflow.db'}", "--artifacts-destination", str(tmp / "artifacts")],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{mlf}/health", 90, mlflow, "mlflow server")
        wait_http(f"http://127.0.0.1:{dash}/api/version", 120, head, "ray head")
        yield {"address": f"http://127.0.0.1:{dash}", "mlflow": f"http://127.0.0.1:{mlf}", "tmp": tmp}
    finally:
        stop_group(head, str(tmp), grace=3)  # `ray start --block` outlives a SIGTERM by more than 20 s
        stop_group(mlflow)
        shutil.rmtree(tmp, ignore_errors=True)


def project(root: Path, mlflow: str, extra: list[str] | None = None, name: str = "tiny-job") -> Path:
    """A tiny project: configs/tiny.yaml and jobs/NAME.yaml (working_dir: the project)."""
    (root / "configs").mkdir(parents=True, exist_ok=True)
    (root / "jobs").mkdir(exist_ok=True)
    cfg = {"name": name, "method": {"name": "dncnn", "depth": 3, "width": 8},
           "data": {"max_size": 96, "val_images": 1, "val_crop": 32, "patches": {"size": 32}, "resample_noise": True},
           "train": {"steps": 10, "batch_size": 4, "val_every": 5, "checkpoint_every": 10, "log_every": 5},
           "tracking": {"experiment": "cluster-test"}}  # fmt: skip
    (root / "configs" / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    entry = "raytrain train configs/tiny.yaml " + " ".join(f"--set {s}" for s in extra or [])
    spec = {"name": name, "entrypoint": entry.strip(), "resources": {"num_workers": 1}, "tracking_uri": mlflow}
    path = root / "jobs" / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_a_submitted_job_succeeds_and_its_mlflow_run_holds_metrics(cluster, tmp_path, capsys):
    from mlflow.tracking import MlflowClient

    spec = project(tmp_path / "proj", cluster["mlflow"])
    t0 = time.time()
    code = main(["submit", str(spec), "--dashboard", cluster["address"], "--wait"])
    out = capsys.readouterr()
    assert code == 0, out.err[-3000:]
    assert "submitted tiny-job-" in out.out and "SUCCEEDED" in out.out
    print(f"job wall time {time.time() - t0:.1f} s")
    client = MlflowClient(cluster["mlflow"])
    exp = client.get_experiment_by_name("cluster-test")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert runs[0].data.metrics["val_psnr"] > 0 and runs[0].data.params["scaling.num_workers"] == "1"
    job_id = out.out.split("submitted ")[1].split(":")[0]
    assert main(["jobs", "status", job_id, "--dashboard", cluster["address"]]) == 0
    assert "SUCCEEDED" in capsys.readouterr().out


def test_a_job_the_cluster_cannot_place_fails_fast_with_its_log_tail(cluster, tmp_path, capsys):
    spec = project(tmp_path / "proj", cluster["mlflow"], name="too-big")
    spec.write_text(spec.read_text().replace("num_workers: 1", "num_workers: 64"))
    t0 = time.time()
    assert main(["submit", str(spec), "--dashboard", cluster["address"], "--wait"]) == 1
    err = capsys.readouterr().err
    assert "cannot place 64 workers" in err and "last lines of its log" in err
    assert time.time() - t0 < 120  # said so, did not wait for resources


def test_bad_specs_and_addresses_submit_nothing(cluster, tmp_path, capsys):
    from raytrain.jobs import client

    before = len(client(cluster["address"]).list_jobs())
    spec = project(tmp_path / "proj", cluster["mlflow"], ["train.steps=-1"])
    assert main(["submit", str(spec), "--dashboard", cluster["address"]]) == 1
    assert "train.steps" in capsys.readouterr().err
    spec.write_text(spec.read_text().replace("configs/tiny.yaml", "configs/missing.yaml"))
    assert main(["submit", str(spec), "--dashboard", cluster["address"]]) == 1
    assert "configs/missing.yaml, not found" in capsys.readouterr().err
    spec.write_text(yaml.safe_dump({"name": "x", "entrypoint": "raytrain train configs/tiny.yaml", "gpus": 1}))
    assert main(["submit", str(spec)]) == 1
    assert "gpus: Extra inputs are not permitted" in capsys.readouterr().err
    good = project(tmp_path / "proj2", cluster["mlflow"])
    assert main(["submit", str(good), "--dashboard", f"http://127.0.0.1:{free_port()}"]) == 1
    assert "cannot reach the Ray job API" in capsys.readouterr().err
    assert len(client(cluster["address"]).list_jobs()) == before
