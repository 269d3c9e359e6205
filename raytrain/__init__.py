"""raytrain: train and tune image-restoration models on Ray when clean/noisy pairs are scarce.

The Python API (the CLI's commands use the same functions)::

    import raytrain

    cfg, model = raytrain.load_restorer("runs/ray/NAME", device="auto")     # or runs:/RUN_ID/model, models:/NAME/1
    restored = raytrain.restore(model, noisy)                                # HWC float image in [0, 1]
    cfg, vae = raytrain.load_noise_model("models:/demo-noise/1")
    noisy = raytrain.synthesize(vae, clean, seed=0)                          # a SeNM-VAE's synthetic noisy image
    cfg = raytrain.load_config("configs/dncnn_awgn25.yaml", ["train.steps=100"])
    result = raytrain.train(cfg)                                             # a Ray Train run (embedded local Ray)

A checkpoint is any of: a checkpoint folder, a run's folder (the checkpoint its ``train.keep_best`` picks), a
``model.pt``, at a local path or a URI (``s3://...``), or an MLflow model URI (``runs:/``, ``models:/``; the store:
``MLFLOW_TRACKING_URI``). Names resolve on first use, so ``import raytrain`` stays light (no torch, Ray or MLflow).
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "load_config", "load_restorer", "load_noise_model", "restore", "synthesize", "train"]


def restore(model, noisy, tile: int = 512):
    """``noisy``: an (H, W) or (H, W, C) float image in [0, 1] (numpy); returns the restored image (H, W, C) on the
    CPU, whatever device ``model`` runs on; images larger than ``tile`` go in overlapping tiles."""
    import numpy as np

    from raytrain.evaluate import tiled
    from raytrain.inference import on_device
    from raytrain.layout import to_image, to_tensor

    arr = np.asarray(noisy, dtype=np.float32)
    arr = arr[..., None] if arr.ndim == 2 else arr
    return to_image(tiled(on_device(model.restore, model.device), tile)(to_tensor(arr)).clamp(0, 1))


def synthesize(model, clean, seed: int = 0, level: float | None = None, temperature=None):
    """A SeNM-VAE's synthetic noisy version of ``clean`` ((H, W[, C]) float in [0, 1]); ``level``: the noise std on
    the 0..255 scale (default: drawn from training's), ``temperature``: default the model's."""
    import numpy as np
    import torch

    from raytrain.layout import to_image, to_tensor
    from raytrain.synthesis import synthesis_temperature

    arr = np.asarray(clean, dtype=np.float32)
    arr = arr[..., None] if arr.ndim == 2 else arr
    m = model.cfg.method
    torch.manual_seed(seed)
    x = to_tensor(arr, model.device)
    lv = None if level is None else torch.full((1, 1, 1, 1), level / 255.0, device=model.device)
    t = synthesis_temperature(model, temperature)
    with torch.no_grad():
        y = model.synthesize(x, lv, t, m.synthesis, m.content, m.normalize)
    return to_image(y.clamp(0, 1).cpu())


def train(cfg):
    """Train ``cfg`` (a :func:`load_config` result) with Ray Train; returns the run's result (metrics, the picked
    checkpoint, the MLflow run id)."""
    from raytrain.train.launch import run_training

    return run_training(cfg)


def __getattr__(name: str):
    if name in ("load_restorer", "load_noise_model"):
        from raytrain import inference

        return getattr(inference, name)
    if name == "load_config":
        from raytrain.config import load_config

        return load_config
    raise AttributeError(f"module 'raytrain' has no attribute {name!r}")
