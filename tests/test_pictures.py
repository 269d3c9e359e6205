"""The pictures people look at: curves from MLflow's whole history, an ablation / paired-count plot honest at one x
value, a denoising figure with PSNR per image, residual panels beside the synthetic noise."""

from __future__ import annotations

import numpy as np
import pytest

from raytrain.cli import main


def test_metric_plot_at_one_x_value_draws_gain_bars_over_the_noisy_input_and_says_what_its_error_bars_are():
    from raytrain.tune.ablate import plot_metric

    cells = [{"paired": 10, "arm": "SeNM-VAE", "mean": 30.0, "std": 1.5, "n": 3},
             {"paired": 10, "arm": "real pairs", "mean": 28.5, "std": 1.2, "n": 3}]  # fmt: skip
    fig = plot_metric(cells, ["paired", "arm"], "PSNR (dB)", None, error="std over the held-out images", baseline=27.8)
    ax = fig.axes[0]
    heights = sorted(round(p.get_height(), 6) for p in ax.patches)
    assert heights == [0.7, 2.2]  # zero-based bars: the gain over the noisy input, not PSNR from an arbitrary floor
    assert "gain over the noisy input (27.80)" in ax.get_ylabel() and "\n" in ax.get_ylabel()  # two lines: not cut
    texts = [t.get_text() for t in fig.texts] + [t.get_text() for t in ax.texts]
    assert "error bars: ± std over the held-out images (n = 3)" in texts and {"30.00", "28.50"} <= set(texts)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["paired = 10"]
    # several x values: lines (and the noisy input as a dashed line)
    cells += [{"paired": 40, "arm": "SeNM-VAE", "mean": 31.0, "std": 1.0, "n": 3},
              {"paired": 40, "arm": "real pairs", "mean": 30.0, "std": 1.0, "n": 3}]  # fmt: skip
    fig = plot_metric(cells, ["paired", "arm"], "PSNR (dB)", None, baseline=27.8)
    ax = fig.axes[0]
    assert not ax.patches and sorted(tuple(line.get_xdata()) for line in ax.lines if len(line.get_xdata()) == 2)[0]
    assert any(line.get_linestyle() == "--" and set(line.get_ydata()) == {27.8} for line in ax.lines)


def test_curves_come_from_mlflows_whole_history(tmp_path, capsys):
    from mlflow.tracking import MlflowClient

    from raytrain.history import plot_history
    from raytrain.tracking import Store

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    store = Store(uri, "h", tmp_path)
    run = store.open("r", tags={"method": "dncnn"})
    for s in range(1, 51):
        run.log_metrics({"train_loss": 1.0 / s, "train_lr": 1e-3}, s)
        if s % 10 == 0:
            run.log_metrics({"val_psnr": 20 + s / 10, "val_psnr_noisy": 20.0}, s)
    client = MlflowClient(uri)
    fig = plot_history(client, [run.run_id], None)
    loss_ax, val_ax = fig.axes
    (loss,) = loss_ax.lines  # train_lr is not a loss
    assert len(loss.get_xdata()) == 50  # every logged step, not the checkpointed ones
    val, noisy = val_ax.lines
    assert list(val.get_xdata()) == [10, 20, 30, 40, 50] and set(noisy.get_ydata()) == {20.0}
    assert val_ax.get_title() == "validation: val_psnr"  # the run's headline, from its method tag
    out = tmp_path / "c.png"
    import os

    before = os.environ.get("MLFLOW_TRACKING_URI")
    assert main(["curves", run.run_id, "--out", str(out), "--tracking-uri", uri]) == 0 and out.stat().st_size > 1000
    assert os.environ.get("MLFLOW_TRACKING_URI") == before  # the process's later runs keep their store
    assert main(["curves", run.run_id, "--out", str(out), "--tracking-uri", uri, "--metric", "val_ssim"]) == 1
    assert "no val_ssim history" in capsys.readouterr().err


def test_the_noise_picture_has_residual_panels_on_the_real_noises_scale():
    from raytrain.pipeline_report import noise_columns

    rng = np.random.default_rng(0)
    clean = [np.full((16, 16, 1), 0.5, np.float32) for _ in range(2)]
    real = [c + rng.normal(0, 0.05, c.shape).astype(np.float32) for c in clean]
    synth = [c + rng.normal(0, 0.1, c.shape).astype(np.float32) for c in clean]
    cols = noise_columns(list(zip(clean, real, strict=True)), {"senm": synth})
    assert [c[0] for c in cols] == ["clean", "real noisy", "SeNM-VAE (synthetic)", "real residual", "SeNM-VAE residual"]
    sd = float(np.std(real[0] - clean[0]))
    assert np.allclose(cols[3][1][0], np.clip(0.5 + (real[0] - clean[0]) / (6 * sd), 0, 1))
    assert np.allclose(cols[4][1][0], np.clip(0.5 + (synth[0] - clean[0]) / (6 * sd), 0, 1))
    # twice the real noise's std shows as a wider spread on the same scale
    assert np.std(cols[4][1][0]) > 1.5 * np.std(cols[3][1][0])


def test_the_denoising_picture_labels_each_image_with_its_psnr():
    from raytrain.layout import to_tensor
    from raytrain.metrics import psnr
    from raytrain.pipeline_report import denoise_columns

    rng = np.random.default_rng(1)
    clean = rng.random((24, 24, 1)).astype(np.float32)
    noisy = clean + rng.normal(0, 0.1, clean.shape).astype(np.float32)
    out = clean + rng.normal(0, 0.02, clean.shape).astype(np.float32)
    cols = denoise_columns([(clean, noisy)], {"senm": [out], "real_pairs": [noisy]})
    assert [c[0] for c in cols] == ["noisy input", "SeNM-VAE", "real pairs only", "clean"]
    want = float(psnr(to_tensor(np.clip(out, 0, 1)), to_tensor(clean)))
    assert cols[1][2] == [f"{want:.2f} dB"] and cols[3][2] is None and want > 30


@pytest.mark.parametrize("n", [1, 3])
def test_pictures_render(tmp_path, n):
    from raytrain.pipeline_report import plot_denoise_samples, plot_noise_samples

    rng = np.random.default_rng(n)
    pairs = [(rng.random((40, 40, 1)).astype(np.float32),) * 2 for _ in range(n)]
    imgs = [p[0] for p in pairs]
    assert plot_noise_samples(pairs, {"senm": imgs}, tmp_path / "a.png").stat().st_size > 1000
    assert plot_denoise_samples(pairs, {"senm": imgs}, tmp_path / "b.png").stat().st_size > 1000
