"""LIR config: networks, the weights of eq. 14 (paper defaults), the official code's variants, ablation switches.

Latent: content codes are ``width * 2**n_down`` x H/2**n_down x W/2**n_down (256 x H/4 x W/4 by default).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Weight = Annotated[float, Field(ge=0, le=1000)]

# The paper's Table 4 ablation: (a) no noise encoder E^N_X, (b) no representation discriminator D_R, (c) no BCM,
# (d) full
VARIANTS = {
    "full": (),
    "no_noise_encoder": ("method.noise_encoder=false",),
    "no_repr_disc": ("method.repr_disc=false",),
    "no_bcm": ("method.bcm=false",),
}

# The train section's defaults for LIR (keys the run's config does not set): the official recipe
# (configs/unit_noise2clear-bn.yaml of Wenchao-Du/LIR-for-Unsupervised-IR): Adam lr 1e-4 with weight decay 1e-4,
# halved every 100k of 300k iterations, batch 16 (betas (0, 0.9) are method.betas)
TRAIN_DEFAULTS = {
    "lr": 1e-4,
    "weight_decay": 1e-4,
    "schedule": {"kind": "step", "step_size": 100_000, "gamma": 0.5},
}

# What "official" means for LIR (Wenchao-Du/LIR-for-Unsupervised-IR, configs/unit_noise2clear-bn.yaml): a job spec
# with ``recipe: official`` is checked against it before it is submitted. Dotted config keys; ``global_batch`` is
# train.batch_size x scaling.num_workers
OFFICIAL_RECIPE = {
    "method.width": 64, "method.n_down": 2, "method.n_res": 4, "method.norm": "bn",
    "method.disc_width": 64, "method.disc_layers": 4, "method.disc_scales": 3, "method.disc_growth": "double",
    "method.repr_steps": 3, "method.repr_lr_factor": 0.5, "method.repr_updates": "official", "method.betas": [0.0, 0.9],
    "method.lambda_adv": 1.0, "method.lambda_CC": 10.0, "method.lambda_rec": 10.0, "method.lambda_bc": 5.0,
    "method.lambda_sc": 1.0, "method.lambda_KL": 0.01, "method.scm": True,
    "train.lr": 1e-4, "train.weight_decay": 1e-4, "train.schedule.kind": "step", "train.schedule.step_size": 100_000,
    "train.schedule.gamma": 0.5, "train.steps": 300_000, "global_batch": 16, "data.patches.size": 64,
}  # fmt: skip


class LIRConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    name: Literal["lir"] = "lir"
    # --- networks (official UNIT-based defaults)
    width: Annotated[int, Field(ge=2, le=256)] = 64
    n_down: Annotated[int, Field(ge=0, le=4)] = 2  # 0: a full-resolution content code (CPU recipe option)
    n_res: Annotated[int, Field(ge=0, le=16)] = 4
    norm: Literal["bn", "in", "none"] = "bn"
    noise_dim: Annotated[int, Field(ge=1, le=1024)] = 256  # channels of the noise code z^N_X
    disc_width: Annotated[int, Field(ge=2, le=512)] = 64
    disc_layers: Annotated[int, Field(ge=1, le=6)] = 4
    disc_growth: Literal["double", "constant"] = "double"  # official (UNIT MsImageDis): the width doubles per layer
    disc_scales: Annotated[int, Field(ge=1, le=4)] = 3
    repr_widths: tuple[int, ...] = (32, 64, 128, 256)
    # --- loss weights of eq. 14 (paper)
    lambda_R: Weight = 1.0  # representation adversarial (eq. 9)
    lambda_adv: Weight = 1.0  # domain adversarial (eqs. 12-13)
    lambda_CC: Weight = 10.0  # cross-cycle (eqs. 7-8)
    lambda_rec: Weight = 10.0  # self-reconstruction
    lambda_bc: Weight = 5.0  # background consistency (eq. 10)
    lambda_sc: Weight = 1.0  # semantic consistency (eq. 11)
    lambda_KL: Weight = 0.01  # KL of the noise code
    bcm_weights: tuple[Weight, Weight, Weight] = (0.25, 0.5, 1.0)  # per blur level 5 / 9 / 15
    bcm_reading: Literal["paper", "official"] = "paper"  # paper: sigma 5/9/15; official: kernel size 5/9/15, sigma 25
    scm_layer: Literal["conv5_1", "conv4_1"] = "conv5_1"  # paper: conv5_1; official: conv4_1
    scm_instance_norm: bool = False  # official: features instance-normalised before the L2
    scm_weights: str | None = None  # local torchvision VGG-19 state dict (e.g. vgg19-dcbb9e9d.pth)
    scm_backbone: Literal["pretrained", "random"] = "pretrained"  # random: tests and demos only (logged as such)
    # paper: KL(N(mu, var) || N(0, 1)) on the noise code; mu2 (official, UNIT's): mean(mu^2) on every code (both
    # content codes, the noise code and the three codes of the cycle), unit Gaussian noise added to every code decoded
    kl: Literal["gaussian", "mu2"] = "gaussian"
    repr_gan: Literal["lsgan", "bce"] = "lsgan"
    # --- update schedule (official): D_R steps, then D_X/D_Y, then encoders + generators
    repr_steps: Annotated[int, Field(ge=1, le=10)] = 3
    repr_lr_factor: Annotated[float, Field(gt=0, le=10)] = 0.5
    repr_clip: Annotated[float, Field(gt=0)] = 5.0
    # own: D_R is trained only in its repr_steps updates (eq. 9) and frozen otherwise; official: the official trainer
    # also steps D_R's optimiser in the D_X/D_Y update (its loss added, grad norm clipped at repr_clip) and in the
    # generator update (towards the 1/2 the encoders aim at)
    repr_updates: Literal["own", "official"] = "official"
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = (0.0, 0.9)
    # --- ablation switches (paper Table 4): (a) noise_encoder=false, (b) repr_disc=false, (c) bcm=false, (d) all on
    noise_encoder: bool = True
    repr_disc: bool = True
    bcm: bool = True
    scm: bool = True

    @model_validator(mode="after")
    def _sensible(self) -> LIRConfig:
        set_ = self.model_fields_set
        off_but_weighted = [
            (flag, w) for flag, w in (("noise_encoder", "lambda_KL"), ("repr_disc", "lambda_R"), ("bcm", "lambda_bc"),
                                      ("scm", "lambda_sc"))
            if not getattr(self, flag) and w in set_ and getattr(self, w) > 0
        ]  # fmt: skip
        if off_but_weighted:
            flag, w = off_but_weighted[0]
            raise ValueError(f"{w}={getattr(self, w)} has no effect with {flag}=false; drop one of them")
        if not self.repr_disc and self.lambda_adv == 0:
            raise ValueError("repr_disc=false and lambda_adv=0: nothing aligns the two domains")
        if self.scm and self.scm_backbone == "pretrained" and self.scm_weights is None:
            raise ValueError(
                "scm=true needs VGG-19 weights: set method.scm_weights to a local torchvision vgg19 .pth file "
                "(no download happens), or method.scm=false, or method.scm_backbone=random for a demo"
            )
        return self
