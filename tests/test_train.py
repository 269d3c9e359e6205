"""Ray Train end to end: 2 CPU workers, tiny DnCNN, the shared local Ray."""

import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_two_worker_dncnn_beats_the_noisy_input(trained):
    cfg, res = trained
    m = res.metrics
    assert m["step"] == cfg.train.steps
    assert m["val_psnr"] > m["val_psnr_noisy"] + 2.0, m  # sigma 25: noisy ~20.2 dB
    assert m["val_ssim"] > m["val_ssim_noisy"]
    assert res.checkpoint and (__import__("pathlib").Path(res.checkpoint) / "state.pt").is_file()


def test_mlflow_run_holds_params_metrics_images_and_weights(trained):
    from mlflow.tracking import MlflowClient

    from raytrain.tracking import resolve_uri

    cfg, res = trained
    client = MlflowClient(resolve_uri(None, cfg.workdir))
    run = client.get_run(res.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["method.width"] == "16" and run.data.params["data.noise.sigma"] == "25.0"
    hist = client.get_metric_history(res.run_id, "val_psnr")
    assert [h.step for h in hist] == [60, 120]
    assert len(client.get_metric_history(res.run_id, "train_loss")) >= 10
    arts = {a.path for a in client.list_artifacts(res.run_id, "images")} | {
        a.path for a in client.list_artifacts(res.run_id, "weights")
    }
    assert "images/val_step0000060.png" in arts and "weights/model.pt" in arts
    # reproducibility: the code's commit, the packages' versions and the config that reruns it
    import subprocess

    import torch
    import yaml

    from raytrain.config import to_raw, validate

    tags = run.data.tags
    root = Path(__file__).resolve().parents[1]
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert tags["raytrain.git_commit"] == head == tags["mlflow.source.git.commit"] and len(head) == 40
    assert tags["raytrain.git_dirty"] in ("true", "false") and tags["torch.version"] == torch.__version__
    assert tags["ray.version"] == __import__("ray").__version__ and tags["raytrain.version"]
    names = {a.path for a in client.list_artifacts(res.run_id)}
    assert {"config.yaml", "config_resolved.yaml", "model"} <= names  # model/: the run's MLflow model
    assert "model/MLmodel" in {a.path for a in client.list_artifacts(res.run_id, "model")}
    got = client.download_artifacts(res.run_id, "config.yaml", str(Path(cfg.workdir) / "dl-config"))
    assert validate(yaml.safe_load(Path(got).read_text())) == cfg and to_raw(cfg)["name"] == "tiny"


def test_rerun_with_resume_from_continues_the_step_count(ray_local, tiny, trained):
    from raytrain.train.launch import run_training

    _, first = trained  # two workers' checkpoint, resumed by one (the world size is not part of the state)
    cfg = tiny("name=continued", "train.steps=130", "train.val_every=10", "train.checkpoint_every=10",
               f"train.resume_from={first.checkpoint}", "tracking.enabled=false", "scaling.num_workers=1")  # fmt: skip
    res = run_training(cfg)
    assert res.metrics["start_step"] == 120 and res.metrics["step"] == 130


def test_failure_without_retries_is_one_clear_error(ray_local, tiny):
    from raytrain.errors import RaytrainError
    from raytrain.train.launch import run_training

    cfg = tiny("name=dies", "train.steps=20", "train.fail_at_step=5", "scaling.max_failures=0",
               "tracking.enabled=false", "scaling.num_workers=1")  # fmt: skip
    with pytest.raises(RaytrainError, match="injected failure at step 5"):
        run_training(cfg)


def test_a_diverged_run_fails_with_its_own_line_and_a_failed_mlflow_run(ray_local, tiny, monkeypatch):
    """Every step over train.grad_skip: the run stops with TrainingDiverged's own line (not Ray's wrapper) and a FAILED
    MLflow run, without spending Ray's one allowed restart (max_failures=1) on replaying the divergence: Ray Train
    records one attempt of the run."""
    from mlflow.tracking import MlflowClient

    from raytrain.errors import RaytrainError
    from raytrain.train.launch import run_training

    monkeypatch.setenv("RAY_TRAIN_ENABLE_STATE_TRACKING", "1")  # Ray Train records the run's attempts
    cfg = tiny("name=diverges", "train.steps=20", "train.grad_skip=1e-12", "train.max_bad_steps=3",
               "scaling.max_failures=1", "scaling.num_workers=1")  # fmt: skip
    t0 = time.time()
    with pytest.raises(RaytrainError, match=r"^loss was NaN/Inf \(or over train.grad_skip\) for 3 steps in a row up to "
                                            r"step 3 \(.*\); lower train.lr"):  # fmt: skip
        run_training(cfg)
    client = MlflowClient(f"sqlite:///{Path(cfg.workdir) / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()], "tags.method = 'dncnn'")
    assert [r.info.status for r in runs if r.info.run_name.startswith("diverges")] == ["FAILED"]
    from ray.train.v2._internal.state.state_actor import get_state_actor  # Ray Train's record of runs and attempts

    runs = ray_local.get(get_state_actor().get_train_runs.remote())
    attempts = ray_local.get(get_state_actor().get_train_run_attempts.remote())
    (run_id,) = [i for i, r in runs.items() if r.name.startswith("diverges")]
    assert len(attempts[run_id]) == 1, attempts[run_id]  # no restart spent on replaying the divergence
    print(f"diverged run failed in {time.time() - t0:.1f} s")


def test_cluster_too_small_is_reported_not_hung(ray_local, tiny):
    from raytrain.errors import RaytrainError
    from raytrain.train.launch import check_resources

    with pytest.raises(RaytrainError, match="cannot place 64 workers"):
        check_resources(tiny("scaling.num_workers=64"))
    with pytest.raises(RaytrainError, match="GPU: need 2"):
        check_resources(tiny("scaling.use_gpu=true"))


def test_a_rerun_under_the_same_name_resumes_only_the_same_run(trained):
    """Ray resumes a run launched again with the same name and storage: the same config (more steps) resumes with
    a line saying so, a finished one says there is nothing to train, another config is refused naming what differs."""
    from raytrain.config import apply_overrides, to_raw, validate
    from raytrain.errors import RaytrainError
    from raytrain.train.preflight import check_rerun

    cfg, _ = trained
    again = lambda *sets: validate(apply_overrides(to_raw(cfg), list(sets)))  # noqa: E731
    assert "already finished at step 120" in check_rerun(cfg)
    assert "resuming the stored run" in check_rerun(again("train.steps=200")), check_rerun(again("train.steps=200"))
    assert "at step 120 of 200" in check_rerun(again("train.steps=200", "train.val_every=10", "tracking.enabled=false"))
    with pytest.raises(RaytrainError, match=r"another config \(method.width: 16 -> 8\).*--set name="):
        check_rerun(again("method.width=8", "train.steps=200"))
    with pytest.raises(RaytrainError, match=r"data.noise.sigma: 25.0 -> 15.0, train.lr: 0.002 -> 0.001\)"):
        check_rerun(again("data.noise.sigma=15", "train.lr=0.001"))
    assert check_rerun(again("name=tiny-new")) is None  # another name: a new run


def test_a_worker_group_that_leaves_ray_data_no_cpu_is_refused_or_waited_for(tiny, monkeypatch):
    """The CPUs the patch streams need beside the worker group (one per stream) are counted: a group that takes every
    CPU is refused (it would sit at step 0), and scaling.wait_for_nodes_s waits for nodes that bring them."""
    import ray

    from raytrain.errors import RaytrainError
    from raytrain.train.launch import check_resources

    have = iter([{"CPU": 2.0}, {"CPU": 2.0}, {"CPU": 6.0}])
    monkeypatch.setattr(ray, "cluster_resources", lambda: next(have))
    senm = ["method.name=senm", "scaling.num_workers=1", "scaling.cpus_per_worker=2"]  # 3 streams
    with pytest.raises(RaytrainError, match=r"the cluster has 2 CPUs: 1 workers x 2 CPUs leave 0 for Ray Data's 3 "
                                            r"patch stream\(s\), which need 1 each"):  # fmt: skip
        check_resources(tiny(*senm))
    check_resources(tiny(*senm, "scaling.wait_for_nodes_s=0.5"))  # 2 CPUs, then a node joins: 6 >= 2 + 3
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 3.0})
    check_resources(tiny("scaling.num_workers=2"))  # DnCNN: 2 workers + 1 stream fit in 3
    with pytest.raises(RaytrainError, match="leave 0 for Ray Data's 1 patch stream"):
        check_resources(tiny("scaling.num_workers=3"))


def test_keep_best_picks_the_best_checkpoint_not_the_newest(ray_local, tiny):
    """train.keep_best ranks the checkpoints by a validation metric: here PSNR *minimised* (so the pick is an early,
    worse checkpoint of an improving run, never simply the newest). Every checkpoint step validates (val_every 20 does
    not divide them); the run's result, its weights artifact, its tags and a run folder given to eval / denoise all
    name the picked one, while the newest stays for resume; Ray keeps the best beside the newest."""
    import json

    from mlflow.tracking import MlflowClient

    from raytrain import locations
    from raytrain.tracking import resolve_uri
    from raytrain.train.checkpoint import META, checkpoint_dirs, find_inference_file
    from raytrain.train.launch import run_training

    cfg = tiny("name=best", "train.steps=30", "train.val_every=20", "train.checkpoint_every=10",
               "train.keep_checkpoints=1", "train.keep_best=val_psnr:min", "scaling.num_workers=1",
               "train.lr=0.002")  # fmt: skip
    res = run_training(cfg)
    meta = lambda d: json.loads(locations.read_bytes(locations.join(d, META)))  # noqa: E731
    client = MlflowClient(resolve_uri(None, cfg.workdir))
    hist = {h.step: h.value for h in client.get_metric_history(res.run_id, "val_psnr")}
    assert sorted(hist) == [10, 20, 30]  # 10 and 30: checkpoint steps, validated for the ranking
    worst = min(hist, key=hist.get)
    assert meta(res.checkpoint)["step"] == worst and meta(res.last_checkpoint)["step"] == 30
    assert worst != 30, hist  # the run improved: a pick of the newest would fail the line above
    assert res.pick == f"best val_psnr {hist[worst]:.4g} at step {worst}"
    folder = locations.join(res.storage, cfg.name)
    assert len(checkpoint_dirs(folder)) == 2  # keep_checkpoints=1: the best, and the newest for resume
    assert find_inference_file(folder) == locations.join(res.checkpoint, "model.pt")
    tags = client.get_run(res.run_id).data.tags
    assert (
        tags["raytrain.checkpoint"] == locations.display(res.checkpoint)
        and tags["raytrain.checkpoint_pick"] == res.pick
    )
    assert tags["raytrain.checkpoint_last"] == locations.display(res.last_checkpoint)
    weights = client.download_artifacts(res.run_id, "weights/model.pt", str(Path(cfg.workdir) / "dl"))
    assert Path(weights).read_bytes() == Path(res.checkpoint, "model.pt").read_bytes()
