"""Fault tolerance with real signals: a SIGKILLed Train worker mid-run (issue 14)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from conftest import TINY


def _train_workers() -> list:
    import psutil

    procs = psutil.Process().children(recursive=True)
    out = []
    for p in procs:
        try:
            if "RayTrainWorker" in " ".join(p.cmdline()) or "RayTrainWorker" in p.name():
                out.append(p)
        except psutil.Error:
            continue
    return out


def _registered(storage: Path) -> list[int]:
    """The steps of the checkpoints Ray has registered (every rank reported; a restart resumes from the last)."""
    snap = storage / "checkpoint_manager_snapshot.json"
    try:
        return [int(c["metrics"]["step"]) for c in json.loads(snap.read_text())["checkpoint_results"]]
    except (OSError, ValueError, KeyError):
        return []


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_sigkilled_worker_resumes_from_its_checkpoint_exactly_and_logs_each_step_once(ray_local, tmp_path):
    from mlflow.tracking import MlflowClient

    from raytrain.config import load_config
    from raytrain.train.launch import run_training

    steps = 160
    cfg = load_config(None, [f"workdir={tmp_path}", *TINY, "name=fault", f"train.steps={steps}", "train.val_every=40",
                             "train.checkpoint_every=40", "scaling.max_failures=1"])  # fmt: skip
    box: dict = {}
    thread = threading.Thread(target=lambda: box.update(res=run_training(cfg)), daemon=True)
    t0 = time.time()
    thread.start()
    storage = Path(tmp_path, "ray", "fault")
    killed_at, victim = None, None
    while thread.is_alive() and time.time() - t0 < 240:
        if _registered(storage) and (workers := _train_workers()):
            time.sleep(1.0)  # a few steps past the checkpoint: those are replayed after the restart
            victim = workers[-1].pid
            os.kill(victim, signal.SIGKILL)
            killed_at = time.time()
            break
        time.sleep(0.2)
    thread.join(timeout=300)
    assert victim is not None, "the run ended before a worker could be killed"
    res = box["res"]
    restart_s = time.time() - killed_at
    print(f"killed worker pid {victim} at {killed_at - t0:.1f} s; run finished {restart_s:.1f} s later")
    print(f"restart resumed at step {res.metrics['start_step']:.0f}; final step {res.metrics['step']:.0f}")
    assert res.metrics["step"] == steps and res.metrics["start_step"] >= 40  # resumed from a checkpoint, not step 0
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.get_run(res.run_id)
    assert run.info.status == "FINISHED"
    for key in ("train_loss", "val_psnr"):
        logged = [m.step for m in client.get_metric_history(res.run_id, key)]
        assert logged and len(logged) == len(set(logged)), f"{key} logged twice at some steps: {sorted(logged)}"
        assert max(logged) == steps


def test_a_restarted_worker_does_not_log_the_replayed_steps_again(tmp_path):
    """The logger of a restarted attempt starts past the last step the run already has (the steps between the
    checkpoint and the failure are replayed exactly, so their metrics are already there)."""
    from mlflow.tracking import MlflowClient

    from raytrain.tracking import Store, WorkerLogger

    run = Store(f"sqlite:///{tmp_path / 'mlflow.db'}", "e", tmp_path).open("r")
    first = WorkerLogger(run.info)
    assert first.logged_until == -1
    for step in (10, 20, 30):
        first.log_metrics({"loss": step / 100, "val_psnr": 20.0}, step)
    again = WorkerLogger(run.info)  # the restarted attempt, resumed from a checkpoint at step 10
    assert again.logged_until == 30
    for step in (20, 30, 40):
        again.log_metrics({"loss": step / 50}, step)
    hist = {m.step: m.value for m in MlflowClient(run.uri).get_metric_history(run.run_id, "loss")}
    assert hist == {10: 0.1, 20: 0.2, 30: 0.3, 40: 0.8}
