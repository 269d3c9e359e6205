"""The README's main job (`raytrain demo`), cut to a few steps per run: every stage runs and the report is written."""

import pytest

from raytrain.cli import main


def test_bad_demo_options_are_one_line_errors(capsys):
    assert main(["demo", "--arms", "senm,bogus"]) == 2
    assert main(["demo", "--counts", "ten"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "--arms 'senm,bogus': expected some of" in err[0] and "--counts 'ten'" in err[1]


@pytest.mark.slow
def test_quick_demo_writes_the_table_and_plots(ray_local, tmp_path, capsys):
    arms = "senm,gaussian,real_pairs"
    args = ["demo", "--quick", "--counts", "4", "--arms", arms, "--workdir", str(tmp_path / "demo")]
    assert main(args) == 0
    out = capsys.readouterr().out
    report = (tmp_path / "demo" / "results.md").read_text()
    assert "| SeNM-VAE synthetic + real pairs |" in report and "| real pairs only |" in report and "LIR" in report
    assert "| Gaussian (paired std) + real pairs |" in report and "| (SeNM-VAE noise) | KLD" in report
    assert (tmp_path / "demo" / "psnr_vs_paired.png").stat().st_size > 1000
    assert (tmp_path / "demo" / "noise_samples_4.png").stat().st_size > 1000
    assert (tmp_path / "demo" / "lir_curve.png").stat().st_size > 1000
    assert "mlflow ui --backend-store-uri sqlite:///" in out and "127.0.0.1" in out
