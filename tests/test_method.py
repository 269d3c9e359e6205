"""The method contract and the loop's guards, without Ray."""

import math
from types import SimpleNamespace

import pytest
import torch

from raytrain.methods import build_method
from raytrain.methods.base import StepOutput
from raytrain.methods.denoiser.nets import DnCNN
from raytrain.train import checkpoint as ckpt


def _batch(n=4, s=16):
    clean = torch.rand(n, 1, s, s)
    return {"paired": {"clean": clean, "noisy": clean + 0.1 * torch.randn_like(clean)}}


def test_dncnn_shapes_any_size_and_depth():
    net = DnCNN(3, depth=5, width=8)
    assert net(torch.rand(2, 3, 37, 53)).shape == (2, 3, 37, 53)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 5
    assert len([m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]) == 3
    assert len(DnCNN(1).body) == 1 * 2 + 15 * 3 + 1  # default 17 layers: conv+relu, 15 x conv+bn+relu, conv


def test_train_step_updates_and_loss_falls(tiny):
    torch.manual_seed(0)
    m = build_method(tiny("train.lr=0.01"), torch.device("cpu"))
    batch = _batch()
    first = m.train_step(batch, 1).losses["loss"]
    for step in range(2, 30):
        out = m.train_step(batch, step)
    assert not out.skipped and out.losses["loss"] < first


def test_nan_loss_skips_the_update(tiny):
    m = build_method(tiny(), torch.device("cpu"))
    before = [p.clone() for p in m.nets["denoiser"].parameters()]
    batch = _batch()
    batch["paired"]["noisy"][0, 0, 0, 0] = math.nan
    out = m.train_step(batch, 1)
    assert out.skipped
    assert all(torch.equal(a, b) for a, b in zip(before, m.nets["denoiser"].parameters(), strict=True))


def test_grad_skip_threshold(tiny):
    m = build_method(tiny("train.grad_skip=1e-12"), torch.device("cpu"))
    assert m.train_step(_batch(), 1).skipped


def test_loop_guard_fails_after_max_bad_steps(tiny):
    from raytrain.errors import TrainingDiverged
    from raytrain.train.loop import Loop

    cfg = tiny("train.max_bad_steps=3")
    session = SimpleNamespace(rank=0, world=1, device="cpu")
    loop = Loop(cfg, None, {}, [], session, None, None, "{}")
    loop._guard(StepOutput({"loss": math.nan}, skipped=True), 1)
    loop._guard(StepOutput({"loss": 0.1}), 2)  # a good step resets the count
    loop._guard(StepOutput({"loss": math.nan}, skipped=True), 3)
    loop._guard(StepOutput({"loss": math.nan}, skipped=True), 4)
    with pytest.raises(TrainingDiverged, match="3 steps in a row up to step 5"):
        loop._guard(StepOutput({"loss": math.nan}, skipped=True), 5)
    assert loop.bad_total == 4


def test_a_divergence_is_the_workers_return_value_and_the_driver_raises_it(tiny, monkeypatch):
    """The worker entry point turns TrainingDiverged into its return value (no worker failure for Ray to restart);
    both drivers of a TorchTrainer (a run, a Tune trial's trainer) raise it as the run's own error."""
    from types import SimpleNamespace

    from raytrain.errors import TrainingDiverged
    from raytrain.train import launch, loop, session
    from raytrain.tune import driver

    def diverge(config, sess):
        raise TrainingDiverged("loss was NaN/Inf for 3 steps")

    monkeypatch.setattr(session, "TrainSession", lambda: None)
    monkeypatch.setattr(loop, "run_loop", diverge)
    assert loop.train_loop_per_worker({}) == {loop.DIVERGED: "loss was NaN/Inf for 3 steps"}
    monkeypatch.setattr(loop, "run_loop", lambda config, sess: None)
    assert loop.train_loop_per_worker({}) is None
    launch.raise_diverged(SimpleNamespace(return_value=None))  # a run that finished: nothing raised
    fitted = SimpleNamespace(fit=lambda: SimpleNamespace(return_value={loop.DIVERGED: "it diverged"}))
    monkeypatch.setattr(launch, "make_trainer", lambda *a, **k: fitted)
    monkeypatch.setattr(driver, "ValidationReportCallback", lambda: None)  # Tune's callback needs a Tune session
    with pytest.raises(TrainingDiverged, match="^it diverged$"):
        launch.train_trial(tiny("scaling.trial_runner=trainer"), None, None, 0.0)


def test_checkpoint_roundtrip_full_state_and_rng(tiny, tmp_path):
    cfg = tiny("train.lr=0.01", "train.steps=10", "train.schedule.kind=step", "train.schedule.step_size=3")
    torch.manual_seed(0)
    a = build_method(cfg, torch.device("cpu"))
    for step in range(1, 6):
        a.train_step(_batch(), step)
        a.end_step()
    ckpt.save_checkpoint(tmp_path, a, 5, cfg.model_dump_json(), {"loss": 0.1})
    expected = torch.rand(3)  # what the RNG gives right after the save
    torch.rand(100)

    b = build_method(cfg, torch.device("cpu"))
    state = ckpt.load_state(tmp_path)
    b.load_state_dict(state)
    ckpt.restore_rng(state["rng"])
    assert torch.equal(torch.rand(3), expected)
    assert state["step"] == 5 and state["method"] == "dncnn"
    for pa, pb in zip(a.nets["denoiser"].state_dict().values(), b.nets["denoiser"].state_dict().values(), strict=True):
        assert torch.equal(pa, pb)
    assert b.schedulers["denoiser"].state_dict()["last_epoch"] == 5
    assert b.optimizers["denoiser"].param_groups[0]["lr"] == a.optimizers["denoiser"].param_groups[0]["lr"]
    # the next step is identical from both
    torch.manual_seed(1)
    batch = _batch()
    la, lb = a.train_step(batch, 6).losses["loss"], b.train_step(batch, 6).losses["loss"]
    assert la == lb
    inf = ckpt.load_inference(tmp_path)
    assert set(inf["nets"]) == {"denoiser"} and inf["method"] == "dncnn"


def test_not_a_checkpoint(tmp_path):
    from raytrain.errors import RaytrainError

    bad = tmp_path / "model.pt"
    bad.write_bytes(b"garbage")
    with pytest.raises(RaytrainError, match="model.pt: cannot load a raytrain checkpoint"):
        ckpt.load_inference(bad)
    torch.save({"weights": torch.zeros(1)}, bad)
    with pytest.raises(RaytrainError, match="not a raytrain checkpoint"):
        ckpt.load_inference(bad)
    with pytest.raises(RaytrainError, match="no raytrain checkpoint"):
        ckpt.load_inference(tmp_path / "nowhere")


def test_progress_lines_for_logs_report_step_and_time_left(capsys, monkeypatch):
    from raytrain.train import progress as L

    clock = iter([0.0, 0.0, 40.0, 40.0, 41.0])  # construction, each update, each line
    monkeypatch.setattr(L.time, "perf_counter", lambda: next(clock))
    bar = L.ProgressLines(100, "run (lir)", every_s=30)
    bar.update(20)  # the resume step: 0 s, no line
    bar.update(10)  # 40 s after start, >= 30 s since the last line: a line; 10 steps in 40 s -> 70 steps left = 280 s
    bar.set_description("run (lir) val PSNR 21.00 dB")  # always a line
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "run (lir) | step 30/100 | 40 s | 280 s left",
        "run (lir) val PSNR 21.00 dB | step 30/100 | 41 s | 287 s left",
    ]


def test_progress_lines_of_a_time_budgeted_run_count_down_the_budget(capsys, monkeypatch):
    """train.max_minutes with train.steps as a cap: the time left is what remains of the budget, not the steps' ETA."""
    from raytrain.train import progress as L

    clock = iter([0.0, 0.0, 40.0, 40.0, 41.0, 200.0])  # construction, each update, each line
    monkeypatch.setattr(L.time, "perf_counter", lambda: next(clock))
    bar = L.ProgressLines(1_000_000, "run (lir)", every_s=30, budget_s=180)
    bar.update(1)  # the first step: no line
    bar.update(9)  # 40 s: 9 steps in 40 s would leave ~4.4e6 s; the budget leaves 140 s
    bar.set_description("run (lir) val PSNR 21.00 dB")  # 41 s: 139 s
    bar.set_description("run (lir) val PSNR 22.00 dB")  # 200 s: past the budget (the final validation): 0 s
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "run (lir) | step 10/1000000 | 40 s | 140 s left",
        "run (lir) val PSNR 21.00 dB | step 10/1000000 | 41 s | 139 s left",
        "run (lir) val PSNR 22.00 dB | step 10/1000000 | 200 s | 0 s left",
    ]


def test_ema_averages_the_inference_nets_and_is_what_validation_and_export_see(tiny):
    """train.ema = 0.75, known answers: the first update copies the live weights; after the live weights move by +1,
    the average is old + 0.25 (0.75 * old + 0.25 * (old + 1); a swapped decay would give old + 0.75); inside
    ``averaged()`` the nets hold it (buffers stay live), outside the live weights
    are back; export and a checkpoint round trip carry it; off by default."""
    torch.manual_seed(0)
    m = build_method(tiny("train.ema=0.75"), torch.device("cpu"))
    net = m.nets["denoiser"]
    old = {n: p.detach().clone() for n, p in net.named_parameters()}
    m.update_ema()  # first step: a copy
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
        bn = next(mod for mod in net.modules() if isinstance(mod, torch.nn.BatchNorm2d))
        bn.running_mean.fill_(7.0)
    m.update_ema()
    with m.averaged():
        for n, p in net.named_parameters():
            torch.testing.assert_close(p, old[n] + 0.25)
        assert bn.running_mean.eq(7.0).all()  # buffers are the live ones
        x = torch.rand(1, 1, 16, 16)
        during = m.restore(x)
    for n, p in net.named_parameters():
        torch.testing.assert_close(p, old[n] + 1.0)  # the live weights are back
    assert not torch.allclose(during, m.restore(x))
    exported = m.inference_state()["denoiser"]
    for n in old:
        torch.testing.assert_close(exported[n], old[n] + 0.25)
    state = m.state_dict()
    fresh = build_method(tiny("train.ema=0.75"), torch.device("cpu"))
    fresh.load_state_dict(state)
    with fresh.averaged():
        for n, p in fresh.nets["denoiser"].named_parameters():
            torch.testing.assert_close(p, old[n] + 0.25)
    plain = build_method(tiny(), torch.device("cpu"))
    plain.update_ema()
    assert plain._ema is None and "ema" not in plain.state_dict()
