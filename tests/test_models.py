"""Trained nets as MLflow models (pyfunc, safetensors weights, the registry), read back through runs:/ and models:/
URIs by every command that takes a checkpoint; and the TorchScript / ONNX export."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from raytrain.cli import main
from raytrain.config import load_config, to_raw
from raytrain.errors import RaytrainError
from raytrain.methods import build_method
from raytrain.train.checkpoint import export_inference, load_inference

TINY = {
    "dncnn": ["method.depth=3", "method.width=8"],
    "drunet_map": ["method.name=drunet", "method.widths=[4,8]", "method.blocks=1", "method.noise_map=true"],
    "drunet": ["method.name=drunet", "method.widths=[4,8,8]", "method.blocks=1"],
    "lir": ["method.name=lir", "method.scm=false", "method.lambda_sc=0", "method.n_res=1"],
    "rgb": ["method.depth=3", "method.width=8", "data.color=rgb"],
}


def tiny(kind: str, seed: int = 0):
    cfg = load_config(None, TINY[kind])
    torch.manual_seed(seed)
    m = build_method(cfg, torch.device("cpu"), inference=True)
    with torch.no_grad():  # nets whose heads start at zero would restore to a constant: give every weight a value
        for p in m.parameters() if hasattr(m, "parameters") else (q for n in m.nets.values() for q in n.parameters()):
            if not p.any():
                p.normal_(0, 0.05)
    m.train(False)
    return cfg, m


@pytest.fixture
def store(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    from raytrain.tracking import Store

    return Store(uri, "models", tmp_path)


def test_a_logged_model_loads_back_through_runs_and_models_uris_and_as_a_pyfunc(store, tmp_path):
    import mlflow.pyfunc

    from raytrain.inference import load_restorer
    from raytrain.models import log_model

    cfg, m = tiny("dncnn")
    export_inference(tmp_path / "model.pt", m, json.dumps(to_raw(cfg)))
    run = store.open("r")
    assert log_model(run, load_inference(tmp_path / "model.pt"), "den") == "1"
    assert log_model(run, load_inference(tmp_path / "model.pt"), "den") == "2"  # a new version each time
    x = torch.rand(2, 1, 20, 24)
    want = m.restore(x)
    for uri in (f"runs:/{run.run_id}/model", "models:/den/1", "models:/den/2", f"runs:/{run.run_id}/weights/x"):
        if uri.endswith("/x"):
            with pytest.raises(RaytrainError, match="not found in the MLflow store"):
                load_restorer(uri)
            continue
        _, got = load_restorer(uri)
        assert torch.equal(got.restore(x), want), uri
    # the pyfunc: (N, H, W, C) float32 in [0, 1], with its signature; weights stored as safetensors, no pickle
    model = mlflow.pyfunc.load_model("models:/den/1")
    y = model.predict(x.permute(0, 2, 3, 1).numpy())
    assert np.abs(y - want.clamp(0, 1).permute(0, 2, 3, 1).numpy()).max() < 1e-6
    sig = model.metadata.signature
    assert sig.inputs.inputs[0].shape == (-1, -1, -1, 1) and sig.outputs.inputs[0].name == "restored"
    files = {a.path for a in store.client.list_artifacts(run.run_id, "model/artifacts")}
    assert files == {"model/artifacts/weights.safetensors", "model/artifacts/raytrain.json"}
    assert run.store.client.get_run(run.run_id).data.tags["raytrain.registered_model"] == "models:/den/2"


def test_a_noise_model_pyfunc_synthesises_noise(store, tmp_path):
    import mlflow.pyfunc

    from raytrain.models import log_model

    cfg = load_config(None, ["method.name=senm", "method.width=8", "method.growth=4", "method.z_dim=4",
                             "method.zn_dim=2", "method.level_net_width=4", "method.disc_width=4",
                             "method.blocks_per_scale=[1,1]"])  # fmt: skip
    torch.manual_seed(0)
    m = build_method(cfg, torch.device("cpu"))
    m.nets["levels"].add(torch.linspace(10, 20, 16) / 255)
    with torch.no_grad():
        for p in m.nets["vae"].parameters():
            if not p.any():
                p.normal_(0, 0.05)
    export_inference(tmp_path / "senm.pt", m, json.dumps(to_raw(cfg)))
    run = store.open("n")
    log_model(run, load_inference(tmp_path / "senm.pt"))
    model = mlflow.pyfunc.load_model(f"runs:/{run.run_id}/model")
    clean = np.full((1, 32, 32, 1), 0.5, np.float32)
    noisy = model.predict(clean)
    assert noisy.shape == clean.shape and 0.001 < float(np.std(noisy - clean)) < 0.5
    assert model.metadata.signature.outputs.inputs[0].name == "noisy"


def test_a_model_uri_without_a_store_is_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    iio.imwrite(tmp_path / "a.png", np.zeros((8, 8), np.uint8))
    p = subprocess.run([sys.executable, "-m", "raytrain.cli", "denoise", "models:/nothing/1", "a.png", "b.png"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert p.returncode == 1 and "no MLflow store at" in p.stderr and "MLFLOW_TRACKING_URI" in p.stderr
    assert p.stderr.count("\n") == 1 and not (tmp_path / "runs").exists()  # nothing created by a read


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
@pytest.mark.parametrize("kind", list(TINY))
def test_export_matches_the_eager_model(kind, fmt, tmp_path):
    """The exported file, loaded back by its own runtime, restores a photograph (another size than the one it was
    exported with) as the eager model does, to 1e-4."""
    from skimage import data

    from raytrain.export import export, stride_of

    cfg, m = tiny(kind)
    out = tmp_path / "export" / f"m.{fmt}"
    facts = export(m, cfg, fmt, out)
    assert facts["max_abs_diff"] <= 1e-4 and json.loads(out.with_name(out.name + ".json").read_text()) == facts
    assert sorted(p.name for p in out.parent.iterdir()) == sorted([out.name, out.name + ".json"])  # nothing beside it
    moved = tmp_path / f"elsewhere.{fmt}"
    out.rename(moved)  # one self-contained file: it loads without anything it was written beside
    out = moved
    s = stride_of(m)
    img = data.astronaut() if cfg.data.color == "rgb" else data.camera()[..., None]
    h, w = 72 - 72 % s, 120 - 120 % s
    x = torch.from_numpy(np.ascontiguousarray(img[100 : 100 + h, 150 : 150 + w].transpose(2, 0, 1))).float()[None] / 255
    x = torch.cat([x, x.flip(-1)])  # a batch of 2
    level = (torch.full((2, 1, 1, 1), 20 / 255),) if facts["inputs"] == ["noisy", "level"] else ()
    with torch.no_grad():
        want = m._forward(x, level[0]) if level else m.restore(x)
    if fmt == "torchscript":
        got = torch.jit.load(str(out))(x, *level)
    else:
        import onnxruntime as ort

        sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        feed = {"noisy": x.numpy()} | ({"level": level[0].numpy()} if level else {})
        got = torch.from_numpy(sess.run(None, feed)[0])
    assert got.shape == want.shape and float((got - want).abs().max()) <= 1e-4


def test_an_export_that_differs_is_refused_and_leaves_no_file(tmp_path, monkeypatch):
    from raytrain import export as ex

    cfg, m = tiny("dncnn")
    real = ex._write

    def off(*args):
        return real(*args) + 2e-4  # an exporter that changed the arithmetic

    monkeypatch.setattr(ex, "_write", off)
    with pytest.raises(RaytrainError, match=r"differs from the eager one by 2\.0\de-04 \(limit 0\.0001\)"):
        ex.export(m, cfg, "torchscript", tmp_path / "m.pt")
    assert list(tmp_path.iterdir()) == []


def test_export_cli_and_its_refusals(tmp_path, capsys):
    cfg, m = tiny("dncnn")
    export_inference(tmp_path / "model.pt", m, json.dumps(to_raw(cfg)))
    assert main(["export", str(tmp_path / "model.pt"), "--out", str(tmp_path / "m.pt")]) == 0
    out = capsys.readouterr().out
    assert "max abs difference 0.0e+00 (limit 0.0001)" in out and (tmp_path / "m.pt").is_file()
    with pytest.raises(SystemExit):
        main(["export", str(tmp_path / "model.pt"), "--out", str(tmp_path / "x"), "--format", "tflite"])


def test_the_package_root_api(tmp_path):
    """raytrain.load_restorer / restore / load_noise_model / synthesize, documented in the package docstring; the
    import itself stays light."""
    import raytrain

    cfg, m = tiny("dncnn")
    export_inference(tmp_path / "model.pt", m, json.dumps(to_raw(cfg)))
    _, model = raytrain.load_restorer(tmp_path / "model.pt", device="cpu")
    img = np.random.default_rng(0).random((40, 600)).astype(np.float32)  # wider than a tile: restored in tiles
    got = raytrain.restore(model, img, tile=256)
    want = m.restore(torch.from_numpy(img)[None, None]).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    assert got.shape == (40, 600, 1) and np.abs(got - want).max() < 1e-5
    senm = load_config(None, ["method.name=senm", "method.width=8", "method.growth=4", "method.z_dim=4",
                              "method.zn_dim=2", "method.level_net_width=4", "method.disc_width=4",
                              "method.blocks_per_scale=[1,1]"])  # fmt: skip
    vae = build_method(senm, torch.device("cpu"))
    vae.nets["levels"].add(torch.linspace(10, 20, 16) / 255)
    with torch.no_grad():  # the output heads start at zero: give them weights so the noise latent shows
        for p in vae.nets["vae"].parameters():
            if not p.any():
                p.normal_(0, 0.05)
    export_inference(tmp_path / "senm.pt", vae, json.dumps(to_raw(senm)))
    _, nm = raytrain.load_noise_model(tmp_path / "senm.pt")
    clean = np.full((32, 32), 0.5, np.float32)
    a, b, c = (raytrain.synthesize(nm, clean, seed=s, level=15) for s in (0, 0, 1))
    assert a.shape == (32, 32, 1) and np.array_equal(a, b) and not np.array_equal(a, c)
    with pytest.raises(AttributeError):
        raytrain.no_such_name  # noqa: B018
    p = subprocess.run([sys.executable, "-c", "import raytrain, sys; print(sorted(m for m in ('torch', 'ray', "
                        "'mlflow') if m in sys.modules))"], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert p.stdout.strip() == "[]"
