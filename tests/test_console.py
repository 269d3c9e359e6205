"""The console: progress drawn by the driver (rank 0 writes to a board actor, the driver's bar or log lines follow it
and end at the last state: no worker-side bar whose close message can arrive after ``fit`` returned, no worker output
needed), and Ray's / MLflow's own output only when verbose."""

from __future__ import annotations

import io
import logging
import os
import time

import pytest
import ray

from raytrain import console
from raytrain.train.progress import BoardWriter, DriverProgress, ProgressBoard


def wait_for(check, timeout: float = 20.0) -> bool:
    """Poll ``check`` until it is true (the follower draws every 50 ms; a loaded machine starts actors slowly)."""
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            return False
        time.sleep(0.05)
    return True


def test_the_driver_bar_follows_the_board_and_ends_at_its_last_state(ray_local):
    board = ProgressBoard.remote()
    ray.get(board.get.remote())  # started
    out = io.StringIO()
    with DriverProgress(board, "bar", every_s=0.05, file=out) as bar:
        writer = BoardWriter(board, total=40, desc="run (dncnn)", every_s=0.0)
        writer.update(5)  # a resumed run starts at its step
        assert wait_for(lambda: bar.n == 5), "the bar must follow the board while fit runs"
        for _ in range(30):
            writer.update(1)
        writer.set_description("run val PSNR 30.10 dB")
        writer.close()
    assert ray.get(board.get.remote()) == (35, 40, "run val PSNR 30.10 dB")
    assert bar.n == 35 and bar.desc == "run val PSNR 30.10 dB", "on exit the bar draws the board's last state"
    assert "35/40" in out.getvalue() and "val PSNR 30.10 dB" in out.getvalue()


def test_log_lines_on_the_driver_carry_each_validation(ray_local):
    board = ProgressBoard.remote()
    out = io.StringIO()
    with DriverProgress(board, "lines", every_s=0.05, file=out):
        writer = BoardWriter(board, total=100, desc="run (lir)", every_s=0.0)
        writer.update(10)
        writer.set_description("run val PSNR 25.00 dB")
        assert wait_for(lambda: "25.00" in out.getvalue())
        writer.update(90)
        writer.set_description("run val PSNR 26.00 dB")
    lines = out.getvalue().splitlines()
    assert [x.split(" | ")[:2] for x in lines][-2:] == [["run val PSNR 25.00 dB", "step 10/100"],
                                                        ["run val PSNR 26.00 dB", "step 100/100"]]  # fmt: skip
    assert len(lines) <= 3, "one line at the start (if drawn before the first validation) and one per validation"


def test_the_writer_sends_the_first_step_at_once_then_at_most_every_interval(ray_local):
    board = ProgressBoard.remote()
    writer = BoardWriter(board, total=100, desc="a", every_s=3600.0)
    writer.update(3)  # the resume step
    assert ray.get(board.get.remote()) == (3, 100, "a")
    writer.update(7)
    assert ray.get(board.get.remote()) == (3, 100, "a"), "a step inside the interval is not sent"
    writer.set_description("b")
    assert ray.get(board.get.remote()) == (10, 100, "b")


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="bar or lines"):
        DriverProgress(None, "dots")


def clean_env(monkeypatch):
    """Both variables unset for the test and restored after it (set first, so monkeypatch records their values)."""
    for name in (console.VERBOSE_ENV, "MLFLOW_LOGGING_LEVEL"):
        monkeypatch.setenv(name, os.environ.get(name, ""))
        monkeypatch.delenv(name)


def test_quiet_by_default_verbose_forwards_ray_output_and_leaves_mlflow_loud(monkeypatch):
    clean_env(monkeypatch)
    console.set_verbose(False)
    assert console.ray_init_kwargs() == {"log_to_driver": False, "logging_level": logging.ERROR}
    assert os.environ["MLFLOW_LOGGING_LEVEL"] == "WARNING"
    monkeypatch.setenv("MLFLOW_LOGGING_LEVEL", "DEBUG")
    console.set_verbose(False)
    assert os.environ["MLFLOW_LOGGING_LEVEL"] == "DEBUG", "a level the user set is kept"
    monkeypatch.delenv("MLFLOW_LOGGING_LEVEL")
    console.set_verbose(True)
    assert console.verbose() and console.ray_init_kwargs() == {"log_to_driver": True, "logging_level": logging.INFO}
    assert "MLFLOW_LOGGING_LEVEL" not in os.environ


def test_the_cli_flag_and_the_environment_turn_verbose_on(monkeypatch):
    from raytrain import cli
    from raytrain.cli import misc

    clean_env(monkeypatch)
    monkeypatch.setattr(misc, "cmd_reference", lambda args: 0)
    cli.main(["--verbose", "config-reference"])
    assert console.verbose()
    monkeypatch.delenv(console.VERBOSE_ENV)
    monkeypatch.setenv("MLFLOW_LOGGING_LEVEL", "INFO")
    cli.main(["config-reference"])
    assert not console.verbose()
    monkeypatch.setenv(console.VERBOSE_ENV, "1")  # e.g. a Ray job's runtime_env
    cli.main(["config-reference"])
    assert console.verbose()
