"""The README's main job (`raytrain demo`), cut to a few steps per run: every stage runs, the report is written, and
the pipeline's MLflow lineage links every stage to the runs and files it used (the suite's end-to-end pipeline run)."""

import pytest

from raytrain.cli import main


def test_bad_demo_options_are_one_line_errors(capsys):
    assert main(["demo", "--arms", "senm,bogus"]) == 1
    assert main(["demo", "--counts", "ten"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "--arms 'senm,bogus': expected some of" in err[0] and "--counts 'ten'" in err[1]


@pytest.mark.slow
def test_quick_demo_writes_the_table_and_plots(ray_local, tmp_path, capsys, monkeypatch):
    arms = "senm,gaussian,real_pairs"
    args = ["demo", "--quick", "--counts", "4", "--arms", arms, "--workdir", str(tmp_path / "demo")]
    assert main(args) == 0
    out = capsys.readouterr().out
    report = (tmp_path / "demo" / "results.md").read_text()
    assert "| SeNM-VAE synthetic + real pairs |" in report and "| real pairs only |" in report and "LIR" in report
    assert "| Gaussian (paired std) + real pairs |" in report and "| (SeNM-VAE noise) | KLD" in report
    assert (tmp_path / "demo" / "psnr_vs_paired.png").stat().st_size > 1000
    assert (tmp_path / "demo" / "noise_samples_4.png").stat().st_size > 1000
    assert (tmp_path / "demo" / "denoise_samples_4.png").stat().st_size > 1000
    assert (tmp_path / "demo" / "lir_curve.png").stat().st_size > 1000
    assert "LIR (unsupervised, blind AWGN sigma in [5, 50], 4 steps)" in report
    assert "mlflow ui --backend-store-uri sqlite:///" in out and "127.0.0.1" in out
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'demo' / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    by_id = {r.info.run_id: r for r in runs}
    (demo,) = [r for r in runs if r.data.tags.get("raytrain.stage") == "demo"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == demo.info.run_id]
    assert demo.info.status == "FINISHED" and {a.path for a in client.list_artifacts(demo.info.run_id)} >= {
        "results.md", "lir_curve.png", "noise_samples_4.png"}  # fmt: skip
    assert sorted(r.data.tags.get("raytrain.stage", r.data.tags.get("method")) for r in children) == ["lir", "pipeline"]
    assert all(r.info.status == "FINISHED" for r in runs)  # every stage of every level ended with its real status
    pipeline = next(r for r in children if r.data.tags.get("raytrain.stage") == "pipeline")
    stages = {by_id[r].data.tags.get("raytrain.stage") for r in by_id if
              by_id[r].data.tags.get("mlflow.parentRunId") == pipeline.info.run_id}  # fmt: skip
    assert stages == {"noise_model", "synthesize", "downstream", "evaluate"}
    # the pipeline's lineage: each arm's stages, and which runs and files each stage used (this demo-sized run is the
    # suite's end-to-end pipeline run)
    stage_runs = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == pipeline.info.run_id]
    got = sorted((r.data.tags["raytrain.stage"], r.data.tags.get("raytrain.arm", "")) for r in stage_runs)
    assert got == [
        ("downstream", "gaussian"), ("downstream", "real_pairs"), ("downstream", "senm"), ("evaluate", ""),
        ("noise_model", ""), ("synthesize", "gaussian"), ("synthesize", "senm"),
    ]  # fmt: skip
    run_of = {(r.data.tags["raytrain.stage"], r.data.tags.get("raytrain.arm", "")): r for r in stage_runs}
    dn, synth = run_of[("downstream", "senm")], run_of[("synthesize", "senm")]
    assert dn.data.tags["raytrain.synthesis_run"] == synth.info.run_id
    assert dn.data.params["data.synthetic"].endswith("synthetic-senm")
    assert synth.data.tags["raytrain.noise_model_run"] == run_of[("noise_model", "")].info.run_id
    used = run_of[("evaluate", "")].data.tags
    assert used["raytrain.used.downstream/senm"] == dn.info.run_id and used["raytrain.used.noise_model"]
    assert pipeline.data.metrics["senm_psnr"] > 0 and "real_pairs_psnr" in pipeline.data.metrics
    assert {a.path for a in client.list_artifacts(pipeline.info.run_id)} >= {"table.md", "table.csv", "runs.json"}
    # the models it registered, and `raytrain denoise models:/demo-senm/1` from a fresh shell against its store
    names = {m.name: [str(v.version) for v in client.search_model_versions(f"name='{m.name}'")]
             for m in client.search_registered_models()}  # fmt: skip
    assert names == {"demo-noise": ["1"], "demo-senm": ["1"], "demo-gaussian": ["1"], "demo-real_pairs": ["1"],
                     "demo-lir": ["1"]}  # fmt: skip
    assert dn.data.tags["raytrain.registered_model"] == "models:/demo-senm/1"
    # the LIR run has 2 workers: a TorchTrainer inside its Tune trial, whose checkpoints Tune's result does not name;
    # its picked checkpoint is still recorded (weights, MLflow model, registry)
    (lir_run,) = [r for r in children if r.data.tags.get("method") == "lir"]
    assert lir_run.data.tags["raytrain.trial_runner"] == "trainer"
    assert lir_run.data.tags["raytrain.checkpoint_pick"].startswith("best val_psnr")
    assert {a.path for a in client.list_artifacts(lir_run.info.run_id, "weights")} == {"weights/model.pt"}
    import os
    import subprocess
    import sys

    import imageio.v3 as iio
    import numpy as np
    import torch

    from raytrain.inference import load_restorer

    img = (np.random.default_rng(1).random((40, 48)) * 255).astype(np.uint8)
    iio.imwrite(tmp_path / "in.png", img)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "RAY_ADDRESS"))}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'demo' / 'mlflow.db'}"
    cmd = [sys.executable, "-m", "raytrain.cli", "denoise", "models:/demo-senm/1", str(tmp_path / "in.png")]
    p = subprocess.run([*cmd, str(tmp_path / "out.png")], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-2000:]
    _, net = load_restorer(dn.data.tags["raytrain.checkpoint"])  # the checkpoint the registered version came from
    want = net.restore(torch.tensor(img / 255.0, dtype=torch.float32)[None, None]).clamp(0, 1)[0, 0].numpy()
    assert np.abs(iio.imread(tmp_path / "out.png") / 255.0 - want).max() <= 1 / 255 + 1e-6
    # the default store (./runs/mlflow.db here) does not hold it: one line (in-process: a second interpreter's
    # start-up, ~6 s, shows nothing more)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["denoise", "models:/demo-senm/1", str(tmp_path / "in.png"), str(tmp_path / "o2.png")]) == 1
    err = capsys.readouterr().err
    assert "set MLFLOW_TRACKING_URI" in err and err.count("\n") == 1, err
