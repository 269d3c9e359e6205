"""The README's main job (`raytrain demo`), cut to a few steps per run: every stage runs and the report is written."""

import pytest

from raytrain.cli import main


@pytest.mark.slow
def test_quick_demo_writes_the_table_and_plots(ray_local, tmp_path, capsys):
    assert main(["demo", "--quick", "--counts", "4", "--workdir", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    report = (tmp_path / "demo" / "results.md").read_text()
    assert "| SeNM-VAE synthetic + real pairs |" in report and "| real pairs only |" in report and "LIR" in report
    assert (tmp_path / "demo" / "psnr_vs_paired.png").stat().st_size > 1000
    assert (tmp_path / "demo" / "lir_curve.png").stat().st_size > 1000
    assert "mlflow ui --backend-store-uri sqlite:///" in out and "127.0.0.1" in out
