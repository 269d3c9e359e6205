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


@pytest.mark.slow
def test_a_toy_method_in_one_folder_trains_on_ray(tmp_path):
    cmd = [sys.executable, "-m", "raytrain.cli", "train", "--set", "method.name=toy", "--set", f"workdir={tmp_path}",
           "--set", "train.steps=6", "--set", "train.val_every=6", "--set", "train.checkpoint_every=6",
           "--set", "train.log_every=3", "--set", "data.max_size=96", "--set", "data.val_crop=48",
           "--set", "data.val_images=1", "--set", "data.patches.size=32", "--set", "scaling.num_workers=1"]  # fmt: skip
    env = {**os.environ, PLUGINS_ENV: "toy_method",
           "PYTHONPATH": os.pathsep.join([str(PLUGINS), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    assert "6 steps, method toy" in out.stdout
    assert list((tmp_path / "ray").glob("*/checkpoint_*/model.pt")), "the toy run wrote a checkpoint"
