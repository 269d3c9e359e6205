"""Config of the supervised DnCNN denoiser (Zhang et al. 2017)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

# The train section's defaults for these methods (keys the run's config does not set): Adam at the papers' lr, a
# cosine decay over the run (any length of run keeps a useful lr until its end)
TRAIN_DEFAULTS = {
    "dncnn": {"lr": 1e-3, "weight_decay": 0.0, "schedule": {"kind": "cosine"}},  # DnCNN-PyTorch: Adam 1e-3
    "drunet": {"lr": 1e-4, "weight_decay": 0.0, "schedule": {"kind": "cosine"}},  # DRUNet (KAIR): Adam 1e-4
}


class DnCNNConfig(BaseModel):
    """DnCNN: conv+ReLU, (depth-2) x conv+BN+ReLU, conv; predicts the noise (residual learning)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    name: Literal["dncnn"] = "dncnn"
    depth: Annotated[int, Field(ge=3, le=64)] = 17
    width: Annotated[int, Field(ge=1, le=512)] = 64
    batch_norm: bool = True
    loss: Literal["l2", "l1"] = "l2"


class DRUNetConfig(BaseModel):
    """DRUNet: U-Net with residual blocks (Zhang et al. 2021); SeNM-VAE's downstream denoiser. Predicts the clean
    image; L1 loss as in the DRUNet paper. ``noise_map``: the non-blind variant with a noise-level input channel
    (training uses each patch's true level; ``denoise`` takes ``--level`` or estimates it with scikit-image's
    wavelet estimator)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    name: Literal["drunet"] = "drunet"
    widths: tuple[Annotated[int, Field(ge=1, le=1024)], ...] = (64, 128, 256, 512)
    blocks: Annotated[int, Field(ge=1, le=16)] = 4
    noise_map: bool = False
    loss: Literal["l2", "l1"] = "l1"
