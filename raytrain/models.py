"""A run's trained nets as an MLflow model, and back.

Every training run logs the checkpoint its ``train.keep_best`` picked as an MLflow model under the run's ``model``
artifact folder: a pyfunc (``mlflow.pyfunc.load_model("runs:/RUN_ID/model").predict(batch)``: a denoiser restores
an (N, H, W, C) float32 batch in [0, 1], a SeNM-VAE synthesises noisy images from clean ones), with a tensor
signature, the weights in safetensors (``artifacts/weights.safetensors``, no pickle) and raytrain's config
(``artifacts/raytrain.json``). ``tracking.register: NAME`` also registers it in MLflow's model registry (a new
version per run). Every command that takes a checkpoint takes ``runs:/RUN_ID/model`` and ``models:/NAME/VERSION``
(:func:`is_model_uri`, :func:`load_payload`), from the tracking store named by ``MLFLOW_TRACKING_URI`` (default:
``runs/mlflow.db``, a run's default store).
"""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path

import numpy as np

from raytrain.errors import RaytrainError

ARTIFACT = "model"
WEIGHTS, META = "weights.safetensors", "raytrain.json"
SCHEMES = ("runs:/", "models:/")


def is_model_uri(location) -> bool:
    return isinstance(location, str) and location.startswith(SCHEMES)


def tracking_uri() -> str:
    """The store ``runs:/`` and ``models:/`` are read from: ``MLFLOW_TRACKING_URI``, else ``./runs/mlflow.db``."""
    from raytrain.tracking import resolve_uri

    uri = resolve_uri(None, "runs")
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).is_file():
        raise RaytrainError(f"no MLflow store at {uri[len('sqlite:///') :]} (the default, ./runs/mlflow.db); set "
                            "MLFLOW_TRACKING_URI to the store that holds the model (e.g. sqlite:///runs/demo/mlflow.db "
                            "for the demo's)")  # fmt: skip
    return uri


def flat_weights(nets: dict[str, dict]) -> dict:
    """{net: state_dict} -> {"net/key": tensor} (contiguous, unshared: what safetensors stores)."""
    return {f"{net}/{k}": t.detach().cpu().contiguous().clone() for net, sd in nets.items() for k, t in sd.items()}


def nested_weights(flat: dict) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for key, t in flat.items():
        net, _, k = key.partition("/")
        out.setdefault(net, {})[k] = t
    return out


def write_model_dir(payload: dict, path: str | Path) -> Path:
    """An MLflow pyfunc model folder (``MLmodel``, the weights in safetensors, raytrain's metadata) of an inference
    payload (:func:`raytrain.train.checkpoint.load_inference`)."""
    import mlflow.pyfunc
    import torch
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec
    from safetensors.torch import save_file

    from raytrain import __version__
    from raytrain.config import validate
    from raytrain.methods import method_class

    cfg = validate(json.loads(payload["config"]), "checkpoint config")
    c = 3 if cfg.data.color == "rgb" else 1
    restores = method_class(payload["method"]).restores
    with tempfile.TemporaryDirectory() as tmp:
        save_file(flat_weights(payload["nets"]), str(Path(tmp) / WEIGHTS), metadata={"method": payload["method"]})
        meta = {"method": payload["method"], "config": payload["config"], "metrics": payload.get("metrics", {}),
                "kind": "restorer" if restores else "noise_model", "raytrain": __version__}  # fmt: skip
        Path(tmp, META).write_text(json.dumps(meta, indent=1))
        out_name = "restored" if restores else "noisy"
        in_name = "noisy" if restores else "clean"
        sig = ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, -1, -1, c), in_name)]),
                             outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, -1, -1, c), out_name)]))  # fmt: skip
        code = str(Path(__file__).with_name("mlflow_pyfunc.py"))  # a model from code: nothing pickled
        arts = {"weights": str(Path(tmp) / WEIGHTS), "meta": str(Path(tmp, META))}
        reqs = [f"raytrain=={__version__}", f"torch=={torch.__version__.split('+')[0]}", "safetensors"]
        with warnings.catch_warnings():  # asks for type hints and an input example: the signature says what it takes
            warnings.filterwarnings("ignore", category=UserWarning, module=r"mlflow\..*")
            mlflow.pyfunc.save_model(str(path), python_model=code, artifacts=arts, signature=sig, pip_requirements=reqs)
    return Path(path)


def payload_from_dir(folder: str | Path) -> dict:
    """The inference payload of a model folder (``MLmodel`` + ``artifacts/``) or of its ``artifacts`` folder."""
    from safetensors.torch import load_file

    d = Path(folder)
    arts = d / "artifacts" if (d / "artifacts").is_dir() else d
    if not (arts / META).is_file() or not (arts / WEIGHTS).is_file():
        raise RaytrainError(f"{folder}: not a raytrain MLflow model (no artifacts/{META} and {WEIGHTS})")
    meta = json.loads((arts / META).read_text())
    nets = nested_weights(load_file(str(arts / WEIGHTS)))
    return {"format": 1, "kind": "inference", "method": meta["method"], "config": meta["config"], "nets": nets,
            "metrics": meta.get("metrics", {})}  # fmt: skip


def load_payload(uri: str) -> dict:
    """The inference payload of ``runs:/RUN_ID/PATH`` or ``models:/NAME/VERSION`` (``models:/NAME@alias`` too):
    downloaded from the tracking store (:func:`tracking_uri`). ``runs:/ID/weights/model.pt`` (the plain weights
    artifact) works too."""
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    from raytrain.errors import first_line
    from raytrain.files import load_torch

    store = tracking_uri()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            got = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp, tracking_uri=store))
        except (MlflowException, OSError) as exc:
            raise RaytrainError(f"{uri}: not found in the MLflow store {store} ({first_line(exc, 200)}); set "
                                "MLFLOW_TRACKING_URI to the store that holds it") from None  # fmt: skip
        if got.is_file():
            return load_torch(got, "a raytrain checkpoint")
        return payload_from_dir(got)


def log_model(run, payload: dict, register: str | None = None) -> str | None:
    """Log ``payload`` (the picked checkpoint's inference nets) as the run's MLflow model (``model/``); with
    ``register``, a new version of that registered model. Returns the version (None when not registered)."""
    if not run:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_model_dir(payload, Path(tmp) / ARTIFACT)
        run.store.client.log_artifacts(run.run_id, str(folder), ARTIFACT)
    if not register:
        return None
    client = run.store.client
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(register)
    except MlflowException:
        client.create_registered_model(register)
    source = f"{client.get_run(run.run_id).info.artifact_uri}/{ARTIFACT}"
    version = client.create_model_version(register, source, run.run_id)
    run.set_tags({"raytrain.registered_model": f"models:/{register}/{version.version}"})
    return str(version.version)
