"""The method registry: the four methods come from it, and a toy method added in one folder (tests/plugins/toy_method,
named in RAYTRAIN_METHODS) validates, shows its variants and defaults, and trains on Ray Train."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from raytrain.config import OFFICIAL_RECIPES, TRAIN_DEFAULTS, load_config
from raytrain.errors import ConfigError
from raytrain.methods import method_class
from raytrain.methods.registry import PLUGINS_ENV, specs
from raytrain.tune.space import variants_of

PLUGINS = Path(__file__).parent / "plugins"


def test_the_registry_holds_the_five_methods_and_feeds_config_and_variants():
    assert list(specs()) == ["dncnn", "drunet", "lir", "senm", "rrdb"]
    assert list(TRAIN_DEFAULTS) == list(specs()) and set(OFFICIAL_RECIPES) == {"lir", "senm", "rrdb"}
    assert method_class("lir").__name__ == "LIR" and method_class("drunet").__name__ == "SupervisedDenoiser"
    assert method_class("rrdb").__name__ == "RRDBSR"
    assert "no_rec_x" in variants_of("senm") and variants_of("dncnn") == {"full": ()}
    with pytest.raises(ConfigError, match="unknown method 'nope' \\(known: dncnn, drunet, lir, senm, rrdb\\)"):
        method_class("nope")
    with pytest.raises(ConfigError, match="method"):
        load_config(None, ["method.name=toy"])  # not registered in this process


def run_py(code: str, **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PLUGINS), os.environ.get("PYTHONPATH", "")]), **env}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full, timeout=300)


def test_a_toy_method_in_one_folder_is_known_everywhere():
    code = ("from raytrain.config import load_config, TRAIN_DEFAULTS; from raytrain.tune.space import variants_of; "
            "from raytrain.reference import config_reference; "
            "c = load_config(None, ['method.name=toy', 'method.kernel=5']); "
            "print(c.method.kernel, c.train.lr, sorted(variants_of('toy')), "
            "'ToyConfig' in config_reference())")  # fmt: skip
    out = run_py(code, **{PLUGINS_ENV: "toy_method"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["5", "0.01", "['full',", "'wide']", "True"]
    bad = run_py("from raytrain.config import load_config", **{PLUGINS_ENV: "no_such_pkg"})
    assert bad.returncode != 0 and "cannot import the method package 'no_such_pkg'" in bad.stderr


def raylets() -> set[int]:
    """Pids of live raylet processes (Linux /proc)."""
    pids = set()
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().startswith("raylet") and "Z" not in (comm.parent / "stat").read_text().split()[2]:
                pids.add(int(comm.parent.name))
        except OSError:
            continue
    return pids


@pytest.mark.slow
def test_a_toy_method_trains_on_ray_and_sigterm_marks_its_run_killed_leaving_no_ray_behind(tmp_path):
    """One ``raytrain train`` in a process of its own (its own embedded Ray), two checks: the toy method of one folder
    (named in RAYTRAIN_METHODS) trains on a Ray Train worker until it has written checkpoints, then SIGTERM ends the
    driver as Ctrl-C does: exit 130, the MLflow run KILLED, the embedded Ray gone."""
    import signal
    import time

    from mlflow.tracking import MlflowClient

    before = raylets()
    work = tmp_path / "w"
    cmd = [sys.executable, "-m", "raytrain.cli", "train", "--set", "method.name=toy", "--set", f"workdir={work}",
           "--set", "name=term", "--set", "train.steps=100000", "--set", "train.val_every=3",
           "--set", "train.checkpoint_every=3", "--set", "train.log_every=3", "--set", "data.max_size=96",
           "--set", "data.val_crop=48", "--set", "data.val_images=1", "--set", "data.patches.size=32",
           "--num-workers", "1"]  # fmt: skip
    env = {**os.environ, PLUGINS_ENV: "toy_method",
           "PYTHONPATH": os.pathsep.join([str(PLUGINS), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    err_file = (tmp_path / "stderr.txt").open("w")  # a file, not a pipe: Ray's output must never block the child
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err_file, env=env)
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:  # training under way: two checkpoints of the toy's net
        time.sleep(1)
        if len(list((work / "ray").glob("term/checkpoint_*/model.pt"))) >= 2:
            break
    ckpts = list((work / "ray").glob("term/checkpoint_*/model.pt"))
    assert len(ckpts) >= 2 and proc.poll() is None, (tmp_path / "stderr.txt").read_text()[-3000:]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 130
    err_file.close()
    assert "raytrain: interrupted" in (tmp_path / "stderr.txt").read_text()
    client = MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("raytrain").experiment_id])
    assert run.info.status == "KILLED" and run.data.params["method.name"] == "toy"
    assert client.get_metric_history(run.info.run_id, "train_loss")  # the toy's steps were logged
    for _ in range(20):
        if not raylets() - before:
            break
        time.sleep(1)
    assert not raylets() - before, "the embedded Ray cluster outlived the driver"
