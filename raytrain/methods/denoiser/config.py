"""Config of the supervised DnCNN denoiser (Zhang et al. 2017)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class DnCNNConfig(BaseModel):
    """DnCNN: conv+ReLU, (depth-2) x conv+BN+ReLU, conv; predicts the noise (residual learning)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    name: Literal["dncnn"] = "dncnn"
    depth: Annotated[int, Field(ge=3, le=64)] = 17
    width: Annotated[int, Field(ge=1, le=512)] = 64
    batch_norm: bool = True
    loss: Literal["l2", "l1"] = "l2"
