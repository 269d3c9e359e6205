"""Fault tolerance: an injected worker error and, in the same run, a SIGKILLed Train worker (issue 14)."""

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
def test_an_injected_failure_and_a_sigkilled_worker_each_resume_from_the_last_checkpoint_and_log_each_step_once(
    ray_local, tmp_path
):
    """One 2-worker run, two failures (scaling.max_failures=2): rank 0 raises at step 30 (train.fail_at_step, only in
    the attempt Ray did not restore), the restart resumes from the step-20 checkpoint; then a worker of the restarted
    group is SIGKILLed after a later checkpoint, and the next restart resumes from that one. The run finishes and
    MLflow holds every step once (the replayed steps are not logged again)."""
    from mlflow.tracking import MlflowClient

    from raytrain.config import load_config
    from raytrain.train.launch import run_training

    steps = 160
    cfg = load_config(None, [f"workdir={tmp_path}", *TINY, "name=fault", f"train.steps={steps}",
                             "train.val_every=20", "train.checkpoint_every=20", "train.fail_at_step=30",
                             "scaling.max_failures=2"])  # fmt: skip
    box: dict = {}
    thread = threading.Thread(target=lambda: box.update(res=run_training(cfg)), daemon=True)
    t0 = time.time()
    thread.start()
    storage = Path(tmp_path, "ray", "fault")
    killed_at, victim = None, None
    while thread.is_alive() and time.time() - t0 < 240:
        # a checkpoint past the injected failure's restart (step 40 is the restarted attempt's first)
        if max(_registered(storage), default=0) >= 40 and (workers := _train_workers()):
            time.sleep(1.0)  # a few steps past the checkpoint: those are replayed after the restart
            victim = workers[-1].pid
            os.kill(victim, signal.SIGKILL)
            killed_at = time.time()
            break
        time.sleep(0.2)
    thread.join(timeout=300)
    assert victim is not None, "the run ended before a worker could be killed"
    res = box["res"]
    print(f"killed worker pid {victim} at {killed_at - t0:.1f} s; run finished {time.time() - killed_at:.1f} s later")
    killed_from = res.metrics["start_step"]  # the SIGKILL's restart: from a checkpoint at 40 or later
    assert res.metrics["step"] == steps and killed_from >= 40 and killed_from % 20 == 0, res.metrics
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.get_run(res.run_id)
    assert run.info.status == "FINISHED"
    starts = {int(m.step): int(m.value) for m in client.get_metric_history(res.run_id, "start_step")}
    print(f"start step logged at each step: {starts}")
    # before the failure: from step 0; after the injected failure: from the step-20 checkpoint, not from 0
    assert starts[20] == 0 and starts[40] == 20 and starts[steps] == killed_from, starts
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
