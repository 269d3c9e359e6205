"""One CLI grammar: global flags anywhere, --set wherever a config is read, one meaning per name, help on every
argument, --version, --dry-run, distinct exit codes, `did you mean` for a mistyped key, --device."""

import argparse
from pathlib import Path

import pytest
import torch
import yaml

from raytrain import __version__
from raytrain.cli import EXIT_ERROR, _parser, main


def subparsers(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    """Every (sub)command's parser by its full name ('data prepare')."""
    out = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                full = f"{prefix}{name}"
                out[full] = sub
                out.update(subparsers(sub, full + " "))
    return out


ROOT = Path(__file__).resolve().parents[1]
COMMANDS = subparsers(_parser())
# what reads a config: a YAML file or the checkpoint's stored one (and the demo's pipeline runs)
READS_CONFIG = ["train", "eval", "denoise", "dnd", "synthesize", "noise-eval", "pipeline", "tune", "ablate", "demo",
                "data preview"]  # fmt: skip
STARTS_RAY = ["train", "tune", "ablate", "pipeline", "synthesize"]
INFERENCE = ["eval", "denoise", "dnd", "synthesize", "noise-eval"]


def options(parser) -> dict[str, argparse.Action]:
    return {o: a for a in parser._actions for o in a.option_strings}


def test_every_argument_of_every_command_has_help():
    missing = [f"{name}: {a.dest}" for name, p in COMMANDS.items() for a in p._actions
               if not isinstance(a, argparse._SubParsersAction) and not a.help]  # fmt: skip
    assert not missing, missing
    assert len(COMMANDS) >= 16


def test_the_global_flags_go_before_or_after_the_subcommand():
    p = _parser()
    for argv in (["--debug", "train", "x.yaml"], ["train", "x.yaml", "--debug"], ["train", "--debug", "x.yaml"]):
        args = p.parse_args(argv)
        assert args.debug is True and args.verbose is False and args.config == "x.yaml", argv
    assert p.parse_args(["data", "preview", "--out", "a.png", "--verbose"]).verbose is True
    assert p.parse_args(["--verbose", "eval", "ckpt"]).verbose is True  # the subparser keeps the root's value
    assert p.parse_args(["eval", "ckpt"]).debug is False


def test_set_device_address_and_dashboard_mean_one_thing_everywhere():
    for name in READS_CONFIG:
        assert "--set" in options(COMMANDS[name]), name
    for name in STARTS_RAY:
        assert "--address" in options(COMMANDS[name]), name
        assert "Ray" in options(COMMANDS[name])["--address"].help
    for name in INFERENCE:
        assert options(COMMANDS[name])["--device"].default == "auto", name
    for name in ("submit", "jobs"):  # the Ray Jobs API: a dashboard URL, never called --address
        assert "--dashboard" in options(COMMANDS[name]) and "--address" not in options(COMMANDS[name])
    # --seed: the noise draws of synthesize; the sweep's sampler has its own name
    assert "--seed" not in options(COMMANDS["tune"]) and "--sampler-seed" in options(COMMANDS["tune"])


def test_version_and_exit_codes(capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"raytrain {__version__}"
    with pytest.raises(SystemExit) as e:  # a usage error: argparse's 2
        main(["train", "--no-such-flag"])
    assert e.value.code == 2 and "unrecognized arguments: --no-such-flag" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "nothing")]) == EXIT_ERROR == 1  # a raytrain error: 1 and one line
    err = capsys.readouterr().err
    assert err.startswith("raytrain: error: ") and err.count("\n") == 1


def test_interrupted_exits_130(monkeypatch, capsys):
    from raytrain.cli import misc

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(misc, "cmd_reference", interrupted)
    assert main(["config-reference"]) == 130
    assert "interrupted" in capsys.readouterr().err


def test_dry_run_prints_the_resolved_config_and_starts_nothing(capsys, monkeypatch):
    from raytrain import localray, noise_pipeline
    from raytrain.train import launch

    def started(*args, **kwargs):
        raise AssertionError("--dry-run started something")

    for module, name in ((localray, "start"), (launch, "run_training"), (noise_pipeline, "run_pipeline")):
        monkeypatch.setattr(module, name, started)
    assert main(["train", str(ROOT / "configs/dncnn_awgn25.yaml"), "--set", "train.steps=7", "--num-workers", "1",
                 "--dry-run"]) == 0  # fmt: skip
    text = capsys.readouterr().out
    got = yaml.safe_load(text)
    assert got["train"]["steps"] == 7 and got["scaling"]["num_workers"] == 1
    assert got["train"]["keep_checkpoints"] == 3  # a default the file does not set: filled in
    assert got["method"]["name"] == "dncnn"
    assert main(["pipeline", str(ROOT / "configs/senm_pipeline.yaml"), "--dry-run", "--set", "pipeline.copies=3"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["pipeline"]["copies"] == 3


def test_a_mistyped_key_gets_a_suggestion(capsys):
    assert main(["train", "--set", "train.stesp=3", "--dry-run"]) == 1
    assert "train.stesp: Extra inputs are not permitted (did you mean 'steps'?)" in capsys.readouterr().err
    assert main(["train", "--set", "data.nosie.sigma=3", "--dry-run"]) == 1
    assert "(did you mean 'noise'?)" in capsys.readouterr().err
    assert main(["train", "--set", "train.zzzzqq=3", "--dry-run"]) == 1
    assert "did you mean" not in capsys.readouterr().err  # nothing close: no guess


def test_config_reference_goes_to_stdout_unless_out(capsys, tmp_path):
    from raytrain.reference import config_reference

    assert main(["config-reference"]) == 0
    assert capsys.readouterr().out == config_reference()
    assert main(["config-reference", "--out", str(tmp_path / "c.md")]) == 0
    assert (tmp_path / "c.md").read_text() == config_reference()


def test_device_names():
    from raytrain.errors import RaytrainError
    from raytrain.inference import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    for bad in ("tpu", "gpu0", "cuda:x"):
        with pytest.raises(RaytrainError, match="expected auto, cpu, cuda or cuda:N"):
            resolve_device(bad)
    if not torch.cuda.is_available():
        with pytest.raises(RaytrainError, match="--device cuda:1: "):
            resolve_device("cuda:1")


def test_on_device_moves_the_input_and_brings_the_output_back():
    from raytrain.inference import on_device

    seen = []

    def net(x):
        seen.append(x.device)
        return x * 2

    x = torch.ones(1, 1, 4, 4)
    y = on_device(net, "cpu")(x)
    assert torch.equal(y, x * 2) and y.device == x.device and seen == [torch.device("cpu")]


def test_denoise_level_feeds_a_noise_map_drunet_the_given_level(tmp_path):
    """`denoise --level 25` gives a noise-level-map DRUNet the level 25/255 (not its own estimate)."""
    import imageio.v3 as iio
    import numpy as np

    from raytrain.config import load_config, to_raw
    from raytrain.inference import load_restorer
    from raytrain.methods import build_method
    from raytrain.train.checkpoint import export_inference

    cfg = load_config(None, ["method.name=drunet", "method.noise_map=true", "method.widths=[4,8]",
                             "method.blocks=1", "data.color=gray"])  # fmt: skip
    torch.manual_seed(0)
    method = build_method(cfg, torch.device("cpu"), inference=True)
    import json

    export_inference(tmp_path / "model.pt", method, json.dumps(to_raw(cfg)))
    img = np.random.default_rng(0).integers(0, 256, (24, 32), dtype=np.uint8)
    iio.imwrite(tmp_path / "in.png", img)
    assert main(["denoise", str(tmp_path / "model.pt"), str(tmp_path / "in.png"), str(tmp_path / "out.png"),
                 "--level", "25", "--device", "cpu"]) == 0  # fmt: skip
    _, net = load_restorer(tmp_path / "model.pt")
    x = torch.tensor(img / 255.0, dtype=torch.float32)[None, None]
    want = net.nets["denoiser"](x, torch.full((1, 1, 1, 1), 25 / 255)).clamp(0, 1)
    other = net.nets["denoiser"](x, torch.full((1, 1, 1, 1), 5 / 255)).clamp(0, 1)
    got = torch.tensor(iio.imread(tmp_path / "out.png") / 255.0)
    assert (got - want[0, 0]).abs().max() <= 1 / 255 + 1e-6
    assert (got - other[0, 0]).abs().max() > 2 / 255  # the level matters: a wrong level would fail
    assert main(["denoise", str(tmp_path / "model.pt"), str(tmp_path / "in.png"), str(tmp_path / "o2.png"),
                 "--level", "300"]) == 1  # fmt: skip


def test_keep_best_names_a_metric_and_its_mode():
    from raytrain.config import load_config
    from raytrain.errors import ConfigError
    from raytrain.train.checkpoint import best_metric, describe_pick, pick_best

    assert best_metric(load_config(None)) == ("val_psnr", "max")  # auto: the method's headline
    assert best_metric(load_config(None, ["method.name=senm"])) == ("val_kld", "min")
    assert best_metric(load_config(None, ["train.keep_best=val_ssim"])) == ("val_ssim", "max")
    assert best_metric(load_config(None, ["train.keep_best=val_kld_noisy"])) == ("val_kld_noisy", "min")
    assert best_metric(load_config(None, ["train.keep_best=val_psnr:min"])) == ("val_psnr", "min")
    assert best_metric(load_config(None, ["train.keep_best=last"])) is None
    for bad in ("psnr", "val_psnr:best", "train_loss"):
        with pytest.raises(ConfigError, match="train.keep_best"):
            load_config(None, [f"train.keep_best={bad}"])
    cands = [
        ("a", {"step": 10, "val_kld": 0.03}),
        ("b", {"step": 20, "val_kld": float("nan")}),
        ("c", {"step": 30, "val_kld": 0.02}),
        ("d", {"step": 40, "val_kld": 0.05}),
        ("e", {"step": 50}),
    ]
    assert pick_best(cands, ("val_kld", "min"))[0] == "c" and pick_best(cands, ("val_kld", "max"))[0] == "d"
    assert pick_best(cands, None)[0] == "e" and pick_best([("x", {})], ("val_kld", "min"))[0] == "x"
    assert pick_best([], None) is None
    assert describe_pick(cands[2][1], ("val_kld", "min")) == "best val_kld 0.02 at step 30"
    assert describe_pick({"step": 50.0}, None) == "last, step 50"
