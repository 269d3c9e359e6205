"""Search spaces, sweeps (Tune + Optuna, MLflow parent/children), ablation tables, interrupt and resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import TINY

from raytrain.config import load_config, to_raw
from raytrain.errors import ConfigError, RaytrainError
from raytrain.tune.ablate import aggregate, grid_space, parse_grid, table_markdown
from raytrain.tune.space import assign, check_metric, check_space, load_space, parse_space

SWEEP = [*TINY, "scaling.num_workers=1", "train.steps=12", "train.val_every=6", "train.checkpoint_every=12",
         "train.log_every=3", "data.val_images=1", "data.val_crop=32"]  # fmt: skip
ROOT = Path(__file__).resolve().parents[1]


def space(params, **extra):
    return parse_space({"params": params, **extra}, "s.yaml")


# ------------------------------------------------------------------------------------------------ spaces
def test_shipped_spaces_validate_against_their_configs():
    pairs = [("lir_awgn_blind.yaml", "lir_bcm.yaml"), ("senm_camera.yaml", "senm_kl.yaml"),
             ("dncnn_awgn25.yaml", "denoiser.yaml")]  # fmt: skip
    for cfg_file, space_file in pairs:
        s = load_space(ROOT / "search_spaces" / space_file)
        check_space(s, to_raw(load_config(ROOT / "configs" / cfg_file)))
    kl = load_space(ROOT / "search_spaces" / "senm_kl.yaml").params["method.kl_z_weight"]
    assert kl.kind == "loguniform" and kl.values == (1e-7, 1e-6)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"method.depht": {"uniform": [1, 2]}}, "method.depht = 1"),
        ({"train.lr": {"uniform": [0.1, 0.01]}}, "low 0.1 > high 0.01"),
        ({"train.lr": {"normal": [0, 1]}}, "unknown distribution 'normal'"),
        ({"train.lr": {"loguniform": [0, 1]}}, "loguniform needs low > 0"),
        ({"train.lr": [1, 2]}, "expected one of"),
        ({"train.lr": {"uniform": [0.001, 2.0]}}, "train.lr = 2.0 is not accepted"),
    ],
)
def test_bad_spaces_name_the_key(params, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_space(space(params), to_raw(load_config(None)))


def test_a_kl_range_outside_what_senm_accepts_is_refused():
    base = to_raw(load_config(None, ["method.name=senm"]))
    with pytest.raises(ConfigError, match=r"method.kl_z_weight = 2.0 is not accepted"):
        check_space(space({"method.kl_z_weight": {"loguniform": [1e-7, 2.0]}}), base)
    with pytest.raises(ConfigError, match="unknown key"):
        parse_space({"params": {"train.lr": {"uniform": [0.1, 0.2]}}, "metrik": "x"}, "s.yaml")
    with pytest.raises(ConfigError, match="written for method lir"):
        check_space(space({"train.lr": {"uniform": [0.1, 0.2]}}, method="lir"), base)


def test_metric_the_method_never_reports_and_tuple_elements():
    cfg = load_config(None, ["method.name=senm"])
    with pytest.raises(ConfigError, match="never reported by senm"):
        check_metric(cfg, ["val_psnr"], ["max"])
    check_metric(cfg, ["val_kld", "val_rho"], ["min", "min"])
    raw = assign(to_raw(load_config(None, ["method.name=lir", "method.scm=false"])), {"method.bcm_weights.1": 0.7})
    assert load_config(None, []).model_validate(raw).method.bcm_weights == (0.25, 0.7, 1.0)
    raw = assign(to_raw(load_config(None, ["data.paired.count=5"])), {"data.paired.fraction": 0.5})
    assert load_config(None, []).model_validate(raw).data.paired.fraction == 0.5  # count dropped, not both


def test_more_concurrency_than_cores_is_refused_before_any_trial(tmp_path, monkeypatch):
    from raytrain.tune.driver import run_sweep

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    cfg = load_config(None, [f"workdir={tmp_path}", *SWEEP])
    s = space({"train.lr": {"loguniform": [1e-4, 1e-2]}})
    with pytest.raises(RaytrainError, match="= 3 CPUs, this machine has 2"):
        run_sweep(cfg, s, "x", 4, 3, ["val_psnr"], ["max"])
    with pytest.raises(RaytrainError, match="asha needs a single metric"):
        run_sweep(cfg, s, "x", 4, 1, ["val_psnr", "val_ssim"], ["max", "max"], "asha")
    assert not (tmp_path / "sweeps").exists()


# ------------------------------------------------------------------------------------------------ tables
def test_ablation_table_cells_are_mean_and_std_over_seeds():
    rows = [{"data.paired.count": c, "seed": s, "variant": v, "val_psnr": c + s + (1 if v == "full" else 0)}
            for c in (10, 96) for s in (0, 1) for v in ("full", "no_bcm")]  # fmt: skip
    axes = ["data.paired.count", "seed", "variant"]
    cells = aggregate(rows, axes, "val_psnr")
    assert len(cells) == 4 and all(c["n"] == 2 for c in cells)
    full10 = next(c for c in cells if c["data.paired.count"] == 10 and c["variant"] == "full")
    assert full10["mean"] == pytest.approx(11.5) and full10["std"] == pytest.approx(0.5)
    md = table_markdown(cells, axes, "val_psnr")
    assert "| variant | data.paired.count=10 | data.paired.count=96 |" in md
    assert "| full | 11.50 ± 0.50 | 97.50 ± 0.50 |" in md


def test_ablation_baselines_are_scored_on_each_trials_own_validation_pairs():
    """NLM's cell value for a seed is NLM on exactly that seed's validation pairs (a known answer computed here);
    the variant does not change it; a noise-model metric gets no baselines."""
    from raytrain.baselines import classical_rows
    from raytrain.data.collection import load_domains
    from raytrain.tune.ablate import baseline_rows

    cfg = load_config(None, ["data.max_size=96", "data.val_crop=48", "data.val_images=1"])
    rows = [{"seed": s, "variant": v, "val_psnr": 30.0} for s in (0, 1) for v in ("a", "b")]
    out = baseline_rows(cfg, rows, ["seed", "variant"], "val_psnr")
    names = {r["method"] for r in out}
    assert {"noisy input", "NLM (known sigma)", "TV (oracle weight)"} <= names
    assert len(out) == len(names) * 4  # every trial row (seed x variant) gets every baseline
    for seed in (0, 1):
        val = load_domains(load_config(None, ["data.max_size=96", "data.val_crop=48", "data.val_images=1",
                                              f"seed={seed}"])).val  # fmt: skip
        want = np.mean([r["psnr"] for r in classical_rows(val, 25 / 255)["NLM (known sigma)"]])
        got = {r["val_psnr"] for r in out if r["seed"] == seed and r["method"] == "NLM (known sigma)"}
        assert len(got) == 1 and got.pop() == pytest.approx(want), (got, want)
    assert {r["val_psnr"] for r in out if r["seed"] == 0 and r["method"] == "noisy input"} != {
        r["val_psnr"] for r in out if r["seed"] == 1 and r["method"] == "noisy input"
    }
    assert baseline_rows(cfg, [{"seed": 0, "val_kld": 0.1}], ["seed"], "val_kld") == []


def test_grid_parsing_and_variants():
    cfg = load_config(None, ["method.name=lir", "method.scm=false"])
    grid = parse_grid(["paired.count=10,96", "seed=0,1"], cfg)
    assert grid == {"data.paired.count": [10, 96], "seed": [0, 1]}
    s = grid_space(grid, ["full", "no_bcm"], "lir")
    assert s.params["variant"].values == ("full", "no_bcm")
    with pytest.raises(ConfigError, match="unknown for lir: no_such"):
        grid_space(grid, ["no_such"], "lir")
    with pytest.raises(ConfigError, match="expected KEY=V1,V2"):
        parse_grid(["seed"], cfg)


# ------------------------------------------------------------------------------------------------ sweeps
def _runs(workdir: Path, parent: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    p = client.get_run(parent)
    return p, client.search_runs([p.info.experiment_id], f"tags.mlflow.parentRunId = '{parent}'")


@pytest.mark.slow
def test_four_trial_sweep_two_concurrent_logs_one_parent_and_four_children(ray_local, tmp_path):
    from raytrain.tune.driver import run_sweep

    cfg = load_config(None, [f"workdir={tmp_path}", *SWEEP, "name=sw"])
    s = space({"train.lr": {"loguniform": [1e-4, 3e-3]}, "method.width": {"choice": [8, 16]}})
    res = run_sweep(cfg, s, "sw4", 4, 2, ["val_psnr"], ["max"])
    assert len(res.rows) == 4 and all(r["status"] == "TERMINATED" for r in res.rows)
    assert all(r["step"] == 12 and r["val_psnr"] > 0 and 0 < r["startup_s"] < 120 for r in res.rows)
    parent, children = _runs(tmp_path, res.parent_run_id)
    assert parent.info.status == "FINISHED" and len(children) == 4
    for c in children:
        assert c.info.status == "FINISHED" and "val_psnr" in c.data.metrics and "train.lr" in c.data.params
        assert c.data.tags["raytrain.trial_id"] in {r["trial_id"] for r in res.rows}
    best = load_config(res.best_config)  # `raytrain train` accepts it unchanged
    assert best.train.lr == pytest.approx(res.best["train.lr"]) and best.method.width == res.best["method.width"]
    assert res.best["val_psnr"] == max(r["val_psnr"] for r in res.rows)


@pytest.mark.slow
def test_a_one_worker_trial_trains_in_its_own_process_with_the_trainers_history(ray_local, tmp_path):
    """``scaling.trial_runner: auto`` trains a one-worker trial in the trial's process, ``trainer`` by a
    TorchTrainer; both run the one loop, so a seeded trial has the same validation history either way. Trials reuse
    their process (``reuse_actors``: no second start-up): two identical trials one after the other in one process
    have the same history too (nothing of the first leaks into the second)."""
    import json

    from raytrain.tune.driver import run_sweep

    got, pids = {}, set()
    for runner, samples in (("auto", 2), ("trainer", 1)):
        cfg = load_config(None, [f"workdir={tmp_path / runner}", *SWEEP, "name=tr", f"scaling.trial_runner={runner}"])
        res = run_sweep(cfg, space({"train.lr": {"choice": [1e-3]}}), "tr", samples, 1, ["val_psnr"], ["max"])
        parent, children = _runs(tmp_path / runner, res.parent_run_id)
        assert parent.info.status == "FINISHED" and [c.info.status for c in children] == ["FINISHED"] * samples
        for row in res.rows:
            hist = [v for h in res.histories[row["trial_id"]] for v in (h["step"], h["val_psnr"], h["val_ssim"])]
            got[(runner, row["trial_id"])] = (children[0].data.tags["raytrain.trial_runner"], hist, row["startup_s"])
        where = res.folder.local if runner == "auto" else tmp_path / runner / "ray"  # persisted by Tune / by Ray Train
        assert any(where.rglob("model.pt")), f"no checkpoint under {where}"
        if runner == "auto":  # the process each trial reported from (Tune's own result files)
            pids = {json.loads(line)["pid"] for f in where.rglob("result.json") for line in f.read_text().splitlines()}
    print({k: (v[0], f"startup {v[2]:.1f} s") for k, v in got.items()})
    (a1, a2), (t,) = [v for k, v in got.items() if k[0] == "auto"], [v for k, v in got.items() if k[0] == "trainer"]
    assert a1[0] == a2[0] == "process" and t[0] == "trainer"
    assert len(pids) == 1, f"the second trial did not reuse the first one's process: {pids}"
    assert a1[1][::3] == [6, 12] and a1[1] == a2[1], (a1, a2)
    assert a1[1] == pytest.approx(t[1], rel=1e-5), (a1, t)


@pytest.mark.slow
def test_two_by_two_ablation_writes_the_table_csv_and_plots(ray_local, tmp_path):
    from raytrain.tune.ablate import run_ablation

    cfg = load_config(None, [f"workdir={tmp_path}", *SWEEP, "name=ab", "train.steps=6"])
    out = run_ablation(cfg, {"method.width": [8, 16], "seed": [0, 1]}, [], "ab22", "val_psnr", "max", 2)
    cells = [c for c in out["cells"] if c["method"] == "dncnn"]
    assert [(c["method.width"], c["n"]) for c in cells] == [(8, 2), (16, 2)]
    nlm = [c for c in out["cells"] if c["method"].startswith("NLM")]
    assert [(c["method.width"], c["n"]) for c in nlm] == [(8, 2), (16, 2)]  # beside every cell, over the same seeds
    assert nlm[0]["mean"] == pytest.approx(nlm[1]["mean"])  # the width does not change the validation pairs
    rows = out["sweep"].rows
    for c in cells:
        vals = [r["val_psnr"] for r in rows if r["method.width"] == c["method.width"]]
        assert c["mean"] == pytest.approx(sum(vals) / 2)
    folder = out["folder"]
    assert (
        "method.width=8" in (folder / "ablation.md").read_text()
        and "| NLM (known sigma) |" in (folder / "ablation.md").read_text()
    )
    assert (folder / "ablation.csv").read_text().startswith("method.width,method,mean,std,n")
    assert (folder / "metric.png").stat().st_size > 1000 and (folder / "curves.png").stat().st_size > 1000


@pytest.mark.slow
def test_an_interrupted_sweep_resumes_without_duplicates_or_running_runs(ray_local, tmp_path):
    from mlflow.tracking import MlflowClient

    from raytrain.tune.driver import run_sweep

    # trials long enough to be interrupted in the middle (one-worker trials start in ~3 s in the trial's process, the
    # second in the first one's process in ~1 s)
    longer = ["train.steps=400", "train.val_every=200", "train.checkpoint_every=200", "train.log_every=100"]
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(to_raw(load_config(None, [f"workdir={tmp_path}", *SWEEP,
                                                                                *longer]))))  # fmt: skip
    (tmp_path / "space.yaml").write_text(yaml.safe_dump({"params": {"train.lr": {"loguniform": [1e-4, 3e-3]}}}))
    # a driver of its own on the suite's Ray (--address: no second embedded Ray to start), interrupted as a user would
    cmd = [sys.executable, "-m", "raytrain.cli", "tune", str(tmp_path / "cfg.yaml"), "--space",
           str(tmp_path / "space.yaml"), "--samples", "2", "--name", "rs",
           "--address", ray_local.get_runtime_context().gcs_address]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:  # interrupt during the second trial
        time.sleep(0.5)
        try:
            runs = client.search_runs(client.search_experiments()[0].experiment_id, "tags.`raytrain.trial_id` != ''")
        except Exception:  # noqa: BLE001 - the database may not exist yet
            continue
        # the second trial is training, and Tune's snapshot of the experiment (every 2 s) holds the first one's end
        snapshot = "".join(f.read_text() for f in tmp_path.rglob("experiment_state-*.json"))
        if [r.info.status for r in runs].count("FINISHED") >= 1 and len(runs) >= 2 and "TERMINATED" in snapshot:
            break
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    cfg = load_config(tmp_path / "cfg.yaml")
    res = run_sweep(cfg, parse_space({"params": {"train.lr": {"loguniform": [1e-4, 3e-3]}}}), "rs", 2, 1,
                    ["val_psnr"], ["max"], resume=True)  # fmt: skip
    assert len(res.rows) == 2 and all(r["status"] == "TERMINATED" and r["step"] == 400 for r in res.rows)
    parent, children = _runs(tmp_path, res.parent_run_id)
    statuses = sorted(c.info.status for c in children)
    assert parent.info.status == "FINISHED"
    assert statuses.count("FINISHED") == 2 and "RUNNING" not in statuses and statuses.count("KILLED") >= 1
    parents = [
        r for r in client.search_runs([parent.info.experiment_id]) if r.data.tags.get("raytrain.stage") == "sweep"
    ]
    assert len(parents) == 1
