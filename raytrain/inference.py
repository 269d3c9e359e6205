"""Loading the inference nets of a checkpoint for denoise, eval, synthesize and the pipeline. No Ray; MLflow only
for an MLflow model URI (``runs:/``, ``models:/``, raytrain/models.py)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from raytrain.errors import RaytrainError


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """``auto`` (a CUDA GPU when this torch sees one, else the CPU), ``cpu``, ``cuda``, ``cuda:N`` (or a
    ``torch.device``); a GPU this machine or this torch build lacks is a one-line error."""
    if isinstance(spec, torch.device):
        return spec
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(spec)
    except RuntimeError:
        raise RaytrainError(f"--device {spec!r}: expected auto, cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise RaytrainError(f"--device {spec!r}: expected auto, cpu, cuda or cuda:N")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = ("this torch is a CPU build; install the CUDA one (README, Install)" if torch.version.cuda is None
                   else "torch sees no GPU (CUDA_VISIBLE_DEVICES, the driver)")  # fmt: skip
            raise RaytrainError(f"--device {spec}: {why}")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise RaytrainError(f"--device {spec}: this machine has {torch.cuda.device_count()} GPU(s)")
    return dev


def on_device(fn, device: torch.device | str):
    """``fn`` (a batch -> batch restorer or synthesizer) run on ``device``: the input moves there, the output comes
    back to the input's device, so callers that build CPU tensors (evaluation, tiles) need not change."""
    device = torch.device(device)

    def run(x: torch.Tensor, *rest):
        return fn(x.to(device), *rest).to(x.device)

    return run


def load_method(checkpoint: str | Path, device: str | torch.device = "cpu", restorer: bool = True,
                overrides: list[str] | None = None):  # fmt: skip
    """(cfg, method in eval mode) from any checkpoint form: a checkpoint folder, a run's folder, ``model.pt``, at a
    URI, or an MLflow model (``runs:/RUN_ID/PATH``, ``models:/NAME/VERSION``). ``restorer=True`` wants a denoiser
    (DnCNN, DRUNet, LIR's E_X + G_Y); ``False`` wants a noise model (SeNM-VAE). The other kind is a clear one-line
    error. ``overrides``: ``--set`` items applied to the stored config (validated) before the nets are built."""
    from raytrain.train.checkpoint import load_inference

    if isinstance(checkpoint, str) and checkpoint.startswith(("runs:/", "models:/")):
        from raytrain.models import load_payload

        payload = load_payload(checkpoint)
    else:
        payload = load_inference(checkpoint)
    return method_from_payload(payload, device, checkpoint, restorer, overrides)


def method_from_payload(payload: dict, device: str | torch.device = "cpu", where: str | Path = "checkpoint",
                        restorer: bool | None = None, overrides: list[str] | None = None):  # fmt: skip
    """(cfg, method in eval mode) of an inference payload (method name, config JSON, nets); ``restorer`` None takes
    either kind."""
    from raytrain.config import apply_overrides, validate
    from raytrain.methods import build_method, method_class
    from raytrain.methods.base import load_checked

    name = payload["method"]
    if restorer is not None and method_class(name).restores != restorer:
        if restorer:
            raise RaytrainError(f"{where}: a {name} checkpoint is a noise model, not a denoiser; "
                                "use it with `raytrain synthesize` or `raytrain noise-eval`")  # fmt: skip
        raise RaytrainError(f"{where}: a {name} checkpoint is a denoiser, not a noise model; "
                            "synthesis needs a SeNM-VAE (method senm) checkpoint")  # fmt: skip
    cfg = validate(json.loads(payload["config"]), f"{where} (stored config)")
    if overrides:
        cfg = validate(apply_overrides(json.loads(payload["config"]), overrides), f"{where} (stored config + --set)")
    method = build_method(cfg, resolve_device(device), inference=True)
    for k in method.inference_nets:
        if k not in payload["nets"]:
            raise RaytrainError(f"{where}: no weights for the {name} net {k!r}")
        try:
            load_checked(method.nets[k], payload["nets"][k], f"net {k}")
        except RaytrainError as exc:
            raise RaytrainError(f"{where}: {exc}") from None
    method.train(False)
    method.trained_metrics = dict(payload.get("metrics") or {})  # the checkpoint step's metrics (validation figures)
    return cfg, method


def load_restorer(checkpoint: str | Path, device: str | torch.device = "cpu", overrides: list[str] | None = None):
    """(cfg, method) of a denoiser / SR checkpoint; ``method.restore(noisy)`` restores a (N, C, H, W) batch in
    [0, 1] on ``device``. See :func:`load_method` for the checkpoint forms."""
    return load_method(checkpoint, device, restorer=True, overrides=overrides)


def load_noise_model(checkpoint: str | Path, device: str | torch.device = "cpu", overrides: list[str] | None = None):
    """(cfg, method) of a SeNM-VAE checkpoint (``raytrain.synthesis.VAESource`` draws noisy images with it)."""
    return load_method(checkpoint, device, restorer=False, overrides=overrides)
