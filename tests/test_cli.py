"""The console script: clean one-line errors, eval/denoise/preview on a trained checkpoint."""

import subprocess
import sys

import imageio.v3 as iio
import numpy as np
import pytest

from raytrain.cli import main


def run_cli(*args):
    """The real console entry point in a subprocess: exit code and stderr as a user sees them."""
    p = subprocess.run([sys.executable, "-m", "raytrain.cli", *args], capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


@pytest.mark.parametrize(
    "content, expected",
    [
        ("train: {stepz: 3}\n", "train.stepz: Extra inputs are not permitted (did you mean 'steps'?)"),
        ("data: {noise: {sigma: -1}}\n", "data.noise.sigma: Input should be greater than or equal to 0"),
        ("data: {paired: {fraction: 1.5}}\n", "data.paired.fraction: Input should be less than or equal to 1"),
        ("method: {name: unet9000}\n", "method: Input tag 'unet9000' does not match"),
        ("train: [1, 2\n", "not valid YAML at line 2"),
    ],
)
def test_bad_configs_one_line_exit_1(tmp_path, content, expected):
    f = tmp_path / "c.yaml"
    f.write_text(content)
    code, out, err = run_cli("train", str(f))
    assert code == 1
    assert expected in err and err.count("\n") == 1 and "Traceback" not in err


def test_missing_data_folder_and_unreachable_mlflow(tmp_path):
    code, _, err = run_cli("train", "--set", f"data.source={tmp_path}/nope", "--set", "tracking.enabled=false",
                           "--set", f"workdir={tmp_path}")  # fmt: skip
    # checked before Ray is started or connected: one line
    assert code == 1 and "nope: folder not found (data.source)" in err and "Traceback" not in err
    code, _, err = run_cli("train", "--set", "tracking.uri=http://127.0.0.1:9", "--set", f"workdir={tmp_path}")
    assert code == 1 and "MLflow server http://127.0.0.1:9 is unreachable" in err


def test_debug_shows_the_traceback(tmp_path):
    code, _, err = run_cli("--debug", "train", "--set", "train.steps=0")
    assert code != 0 and "Traceback" in err


def test_eval_table(trained, capsys):
    _, res = trained
    assert main(["eval", res.checkpoint, "--data", "samples", "--crop", "64"]) == 0
    out = capsys.readouterr().out
    assert "astronaut" in out and "mean ± std psnr:" in out
    means = {line.split(":")[0]: float(line.split(":")[1].split("±")[0]) for line in out.splitlines()
             if line.startswith("mean")}  # fmt: skip
    assert means["mean ± std psnr"] > means["mean ± std psnr_noisy"]


def test_eval_scores_data_images_as_given_not_at_the_runs_max_size(trained, tmp_path, capsys):
    import torch

    from raytrain.data.degrade import noise_model, rng_for
    from raytrain.data.images import read_image
    from raytrain.inference import load_restorer
    from raytrain.metrics import psnr

    cfg, res = trained
    folder = tmp_path / "big"
    folder.mkdir()
    big = np.asarray(np.clip(np.add.outer(np.arange(200), np.arange(300)) / 500 * 255, 0, 255), np.uint8)
    iio.imwrite(folder / "ramp.png", big)
    assert max(big.shape) > cfg.data.max_size
    assert main(["eval", res.checkpoint, "--data", str(folder), "--tile", "96"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("ramp"))
    _, method = load_restorer(res.checkpoint)
    clean = read_image(folder / "ramp.png", "gray")  # full size, 200 x 300
    noisy = noise_model(cfg.data.noise)(clean, rng_for(cfg.seed, 0, 0))
    x, y = (torch.tensor(a.transpose(2, 0, 1))[None] for a in (noisy, clean))
    want = float(psnr(method.restore(x).clamp(0, 1), y))  # the whole image at once: tiling changes nothing
    assert float(line.split()[2]) == pytest.approx(want, abs=0.01)


def test_denoise_file_and_folder(trained, tmp_path):
    _, res = trained
    rng = np.random.default_rng(0)
    src = tmp_path / "in"
    src.mkdir()
    iio.imwrite(src / "a.png", rng.integers(0, 256, (37, 61), dtype=np.uint8))
    iio.imwrite(src / "b.png", rng.integers(0, 256, (50, 40, 4), dtype=np.uint8))  # RGBA -> alpha dropped
    assert main(["denoise", res.checkpoint, str(src / "a.png"), str(tmp_path / "one.png")]) == 0
    assert iio.imread(tmp_path / "one.png").shape == (37, 61)
    assert main(["denoise", res.checkpoint, str(src), str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png"]
    code, _, err = run_cli("denoise", str(tmp_path / "in"), str(src / "a.png"), str(tmp_path / "x.png"))
    assert code == 1 and "no raytrain checkpoint" in err
    # --level is for a noise-level-map DRUNet; --device cpu and --set on the stored config are accepted
    assert main(["denoise", res.checkpoint, str(src / "a.png"), str(tmp_path / "l.png"), "--level", "25"]) == 1
    assert main(["denoise", res.checkpoint, str(src / "a.png"), str(tmp_path / "d.png"), "--device", "cpu",
                 "--set", "train.steps=5"]) == 0  # fmt: skip
    assert np.array_equal(iio.imread(tmp_path / "d.png"), iio.imread(tmp_path / "one.png"))


def test_data_preview_writes_a_png(tmp_path):
    out = tmp_path / "grid.png"
    assert main(["data", "preview", "--set", "data.paired.fraction=0.4", "--set", "data.max_size=128",
                 "--out", str(out), "--per-domain", "4"]) == 0  # fmt: skip
    img = iio.imread(out)
    assert img.ndim == 3 and img.shape[0] > 100


def test_eval_defaults_to_the_held_out_images(trained, capsys):
    cfg, res = trained
    assert main(["eval", res.checkpoint]) == 0
    out = capsys.readouterr().out
    assert "held-out validation images" in out
    from raytrain.data.collection import load_domains

    for name in load_domains(cfg).val_names:
        assert name in out
