"""Config of the RRDB super-resolution net (ESRGAN, Wang et al. 2018), SeNM-VAE's downstream SR model."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from raytrain.methods.perceptual_options import perceptual_problem

# ESRGAN's PSNR-oriented stage (BasicSR's train_RRDBNet_PSNR_x4): Adam 2e-4, halved every 200k iterations; a run
# of any other length keeps the same shape through a cosine decay unless its config gives a schedule
TRAIN_DEFAULTS = {"lr": 2e-4, "weight_decay": 0.0, "schedule": {"kind": "cosine"}}

# ESRGAN's GAN stage (BasicSR's train_ESRGAN_x4, the paper's Sec. 4 "employ ESRGAN"): pixel L1 at 1e-2, VGG-19
# conv5_4 perceptual L1 at 1, relativistic GAN at 5e-3, Adam 1e-4; SeNM-VAE trains its SR models 60k iterations
OFFICIAL_RECIPE = {
    "method.width": 64, "method.blocks": 23, "method.growth": 32, "method.pixel_loss": "l1",
    "method.pixel_weight": 1e-2, "method.perceptual": "vgg", "method.perceptual_weight": 1.0,
    "method.gan_weight": 5e-3, "train.lr": 1e-4, "train.steps": 60_000,
}  # fmt: skip

Weight = Annotated[float, Field(ge=0)]


class RRDBConfig(BaseModel):
    """RRDBNet: a 3x3 conv, ``blocks`` residual-in-residual dense blocks (3 dense blocks of 5 convs each, ``growth``
    channels, residuals scaled by 0.2), a 3x3 conv and a trunk skip, then nearest-neighbour x2 (or x3) up-sampling
    with convs to the HR size (``data.scale``: 1, 2, 3, 4 or 8). The loss: ``pixel_weight`` x L1 (or L2) to the HR
    patch, plus ``perceptual_weight`` x a perceptual distance (ESRGAN: VGG-19 conv5_4, L1; or LPIPS) and
    ``gan_weight`` x the relativistic average GAN of a PatchGAN discriminator (ESRGAN: a VGG-style one, see
    docs/sr.md) when they are > 0. The PSNR-oriented net is the defaults (pixel L1 only); ESRGAN's recipe is
    ``OFFICIAL_RECIPE``."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    name: Literal["rrdb"] = "rrdb"
    width: Annotated[int, Field(ge=4, le=256)] = 64
    blocks: Annotated[int, Field(ge=1, le=64)] = 23
    growth: Annotated[int, Field(ge=4, le=128)] = 32
    pixel_loss: Literal["l1", "l2"] = "l1"
    pixel_weight: Weight = 1.0
    perceptual: Literal["none", "vgg", "lpips"] = "none"
    perceptual_weight: Weight = 1.0
    perceptual_weights: str | None = None  # vgg: torchvision VGG-19 .pth; lpips: torchvision AlexNet .pth
    lpips_weights: str | None = None  # lpips: the LPIPS v0.1 linear layers (alex.pth of the lpips package)
    perceptual_backbone: Literal["pretrained", "random"] = "pretrained"  # random: tests only
    gan_weight: Weight = 0.0
    disc_width: Annotated[int, Field(ge=4, le=256)] = 64
    disc_layers: Annotated[int, Field(ge=1, le=5)] = 3
    # bicubic: the net predicts the residual to the bicubic-upscaled LR input (VDSR's global skip; not in ESRGAN, whose
    # RRDB starts from zero output and needs its 10^5 steps): short CPU runs start at the bicubic baseline; none: ESRGAN
    residual: Literal["none", "bicubic"] = "none"
    # a generator to start from (ESRGAN starts its GAN stage from the PSNR-oriented net): an exported
    # ``raytrain export`` file or a run's checkpoint folder; its width / blocks must match
    init_from: str | None = None

    @model_validator(mode="after")
    def _terms(self) -> RRDBConfig:
        perceptual = self.perceptual != "none" and self.perceptual_weight > 0
        if self.pixel_weight == 0 and self.gan_weight == 0 and not perceptual:
            raise ValueError("pixel_weight, perceptual_weight and gan_weight are all 0: the net has nothing to learn")
        problem = perceptual_problem(self)
        if problem:
            raise ValueError(problem)
        return self
