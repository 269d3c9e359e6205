"""Loading the inference nets of a checkpoint for denoise, eval, synthesize and the pipeline. No Ray, no MLflow."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from raytrain.errors import RaytrainError


def load_method(checkpoint: str | Path, device: str = "cpu", restorer: bool = True):
    """(cfg, method in eval mode) from any checkpoint form. ``restorer=True`` wants a denoiser (DnCNN, DRUNet, LIR's
    E_X + G_Y); ``False`` wants a noise model (SeNM-VAE). The other kind is a clear one-line error."""
    from raytrain.config import validate
    from raytrain.methods import build_method, method_class
    from raytrain.methods.base import load_checked
    from raytrain.train.checkpoint import load_inference

    payload = load_inference(checkpoint)
    name = payload["method"]
    if method_class(name).restores != restorer:
        if restorer:
            raise RaytrainError(f"{checkpoint}: a {name} checkpoint is a noise model, not a denoiser; "
                                "use it with `raytrain synthesize` or `raytrain noise-eval`")  # fmt: skip
        raise RaytrainError(f"{checkpoint}: a {name} checkpoint is a denoiser, not a noise model; "
                            "synthesis needs a SeNM-VAE (method senm) checkpoint")  # fmt: skip
    cfg = validate(json.loads(payload["config"]), f"{checkpoint} (stored config)")
    method = build_method(cfg, torch.device(device), inference=True)
    for k in method.inference_nets:
        if k not in payload["nets"]:
            raise RaytrainError(f"{checkpoint}: no weights for the {name} net {k!r}")
        try:
            load_checked(method.nets[k], payload["nets"][k], f"net {k}")
        except RaytrainError as exc:
            raise RaytrainError(f"{checkpoint}: {exc}") from None
    method.train(False)
    method.trained_metrics = dict(payload.get("metrics") or {})  # the checkpoint step's metrics (validation figures)
    return cfg, method


def load_restorer(checkpoint: str | Path, device: str = "cpu"):
    return load_method(checkpoint, device, restorer=True)


def load_noise_model(checkpoint: str | Path, device: str = "cpu"):
    return load_method(checkpoint, device, restorer=False)
