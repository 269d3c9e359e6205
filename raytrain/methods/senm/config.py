"""SeNM-VAE config: the hierarchy, the objective's weights (paper defaults), the official code's variants, the Table 6
ablation switch.

Hierarchy: ``blocks_per_scale: [2, 4]`` = 2 latent groups at full resolution, 1 at the downsampling step between the
scales, 4 at half resolution: 7 groups (the paper's L = 7). Every group has a content latent z (``z_dim`` channels)
and a noise latent z_n (``zn_dim`` channels) at its resolution.

Loss scaling follows the official code: reconstruction terms are per-pixel means (MSE), KL terms per-element means
summed over groups. ``kl_noise_weight`` (official 1e-2) weights KL(q(z_n | y, z) || p(z_n | z)) and is annealed
linearly from 0 over ``kl_anneal_steps``; ``kl_z_weight`` is the paper's lambda on KL(q(z | y) || q(z | x)).
``kl_z_scale: paper`` uses lambda as is; ``official`` multiplies it by the (annealed) noise-KL weight, as the official
``KL_weight * KLZ_weight`` does (1e-2 * 1e-7: an effective 1e-9).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from raytrain.methods.perceptual_options import perceptual_problem

Weight = Annotated[float, Field(ge=0, le=1000)]


# The paper's Table 6 ablation: without the reconstruction of x (the clean image) vs the full objective
# Table 6: without the clean image's reconstruction; Table 7's two-domain rows: without the clean-only source (its
# "0 / 100%" row) or the noisy-only target ("100% / 0"); its 0 / 96 / 960 rows are a grid on data.unpaired.count
VARIANTS = {
    "full": (),
    "no_rec_x": ("method.rec_x=false",),
    "no_source": ("data.mix.source=0",),
    "no_target": ("data.mix.target=0",),
}

# The train section's defaults for SeNM-VAE (keys the run's config does not set): the paper / official SIDD recipe,
# Adam lr 1e-4 without weight decay, halved at 150k, 225k, 270k and 285k of 300k steps
TRAIN_DEFAULTS = {
    "lr": 1e-4,
    "weight_decay": 0.0,
    "schedule": {"kind": "multistep", "milestones": [150_000, 225_000, 270_000, 285_000], "gamma": 0.5},
}

# What "official" means for SeNM-VAE (zhengdihan/SeNM-VAE, SIDD/options/train_10_paired_data.json and the paper's
# Sec. 4): a job spec with ``recipe: official`` is checked against it before it is submitted (dotted config keys;
# ``global_batch`` is train.batch_size x scaling.num_workers)
OFFICIAL_RECIPE = {
    "method.width": 64, "method.growth": 32, "method.blocks_per_scale": [2, 4], "method.z_dim": 64,
    "method.zn_dim": 16, "method.kl_noise_weight": 1e-2, "method.kl_anneal_steps": 10_000, "method.kl_z_weight": 1e-7,
    "method.adv_weight": 0.1, "method.gan": "ragan", "method.grad_clip": 200.0, "method.grad_skip": 150.0,
    "method.perceptual": "lpips", "method.perceptual_weight": 1e-2,
    "train.lr": 1e-4, "train.weight_decay": 0.0, "train.schedule.kind": "multistep",
    "train.schedule.milestones": [150_000, 225_000, 270_000, 285_000], "train.schedule.gamma": 0.5,
    "train.steps": 300_000, "global_batch": 8, "data.patches.size": 64,
    "data.mix.paired": 1.0, "data.mix.source": 1.0, "data.mix.target": 1.0,
}  # fmt: skip


class SeNMConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    name: Literal["senm"] = "senm"
    # --- networks (official SIDD sizes)
    width: Annotated[int, Field(ge=4, le=512)] = 64  # feature channels of every encoder/decoder block
    growth: Annotated[int, Field(ge=2, le=256)] = 32  # RDB growth channels
    blocks_per_scale: tuple[Annotated[int, Field(ge=1, le=16)], ...] = (2, 4)
    z_dim: Annotated[int, Field(ge=1, le=512)] = 64
    zn_dim: Annotated[int, Field(ge=1, le=256)] = 16
    # initial log-std of the content posteriors q(z|x), q(z|y) (official 0: N(mean, 1)). z has no prior to match, so
    # starting lower costs nothing and spares a short run hundreds of steps of shrinking the sampling noise of z
    content_logstd_init: Annotated[float, Field(ge=-10, le=0)] = 0.0
    num_down: Annotated[int, Field(ge=0, le=3)] = 0  # pixel-unshuffle steps before the hierarchy (official SIDD: 0)
    level_net_width: Annotated[int, Field(ge=4, le=512)] = 64
    disc_width: Annotated[int, Field(ge=4, le=512)] = 64
    disc_layers: Annotated[int, Field(ge=1, le=6)] = 3
    # --- objective (eqs. 9-11)
    mixture_p1: Annotated[float, Field(gt=0, lt=1)] = 0.5  # q(z|x,y) = p1 q(z|x) + (1-p1) q(z|y)
    # paper: eq. 11's cross terms on pairs (rec_y and KL_n with z ~ q(z|x), rec_x and KL_z with z ~ q(z|y), each
    # term weighted 2 p1 or 2 p2); official: a p1-coin per sample and pass picks q(z|x) or q(z|y) for both passes
    mixture: Literal["paper", "official"] = "paper"
    kl_z_weight: Annotated[float, Field(ge=0, le=1)] = 1e-7  # lambda (the paper's searched range: [1e-7, 1e-6])
    kl_z_scale: Literal["paper", "official"] = "paper"
    kl_noise_weight: Weight = 1e-2
    kl_anneal_steps: Annotated[int, Field(ge=0)] = 10_000  # linear 0 -> 1 on the noise KL; 0 = no annealing
    rec_x: bool = True  # Table 6: false drops -log p(x | z) (the source domain then contributes nothing)
    perceptual: Literal["none", "vgg", "lpips"] = "none"  # official: LPIPS (AlexNet) on the noisy reconstruction
    perceptual_weight: Weight = 1e-2
    perceptual_weights: str | None = None  # vgg: torchvision VGG-19 .pth; lpips: torchvision AlexNet .pth
    lpips_weights: str | None = None  # lpips: the LPIPS v0.1 linear layers (alex.pth of the lpips package)
    perceptual_backbone: Literal["pretrained", "random"] = "pretrained"  # random: tests and demos only
    adv_weight: Weight = 0.1  # PatchGAN on the noisy reconstruction (official D_lossfn_weight)
    gan: Literal["ragan", "lsgan"] = "ragan"
    # --- training guards (official): clip the grad norm at 200, skip the update when it is over 150
    grad_clip: Annotated[float, Field(gt=0)] = 200.0
    grad_skip: Annotated[float, Field(gt=0)] | None = 150.0
    nan_policy: Literal["drop_term", "skip_step"] = "drop_term"  # official: NaN terms are left out of the sum
    # --- data / conditioning
    domain_sampling: Literal["batch", "sample"] = "batch"  # paper: whole batches per domain; official: per sample
    level_conditioning: bool = True  # the noise level conditions z_n (a constant channel beside the features)
    # z_n's contribution to the decoder multiplied by level / (10/255): the noise z_n drives scales with the level
    # by construction (a FiLM-style scale beside the concatenated channel, whose ~0.04 values a net barely reads);
    # not in the paper or the official code
    level_modulation: bool = False
    level_detach: bool = True  # the VAE loss does not train the level net (official: it does, on target batches)
    level_reservoir: Annotated[int, Field(ge=16, le=1_000_000)] = 4096  # levels kept for the synthesis prior
    # the level net's predictions join the synthesis level prior only once its mean error on pairs is below this
    # fraction of the mean paired level (before that, only the true paired levels are drawn)
    level_pred_tolerance: Annotated[float, Field(gt=0, le=1)] = 0.2
    # --- synthesis (validation, `raytrain synthesize`, the pipeline): see raytrain/methods/senm/method.py
    synthesis: Literal["full", "residual"] = "residual"  # full: the decoder output (official); residual: x + z_n's part
    content: Literal["sample", "mean"] = "sample"  # full synthesis: z ~ q(z|x) or its means
    normalize: bool = False  # official --normalize: shift each synthetic image's mean to the clean image's
    # of z_n's prior draws at synthesis (0: the prior means); auto: calibrated at each validation on recent real
    # training pairs so that their synthetic noise has the real noise's RMS (a diagonal prior under-disperses)
    temperature: Literal["auto"] | Annotated[float, Field(ge=0, le=10)] = "auto"
    # z_n's prior draws: diagonal (the paper: white eps) or colored: eps convolved with a kernel per latent group whose
    # output has the cross-spectrum (space x channels) of the aggregate posterior (z_n ~ q(z_n|y,z) on recent real
    # training pairs, in the prior's units), fitted at each validation: an ex-post prior fit, as two-stage VAEs do.
    # Not in the paper or the official code. The posterior carries the noise's correlation into z_n; white prior draws
    # decode to whiter noise, which the auto temperature then inflates
    prior: Literal["diagonal", "colored"] = "diagonal"
    # synthesis from p(y|z,z_n): mean (the paper and official code: the decoder output) or sample: plus a draw of
    # stationary Gaussian noise (in units of the level) whose spectrum is the real noise's less that of the part the
    # decoder explains from posterior z_n, on recent real training pairs: what the decoder does not reproduce
    likelihood: Literal["mean", "sample"] = "mean"
    # the synthetic noise's spectrum: model (what the prior, decoder and likelihood give) or matched: the whole
    # synthetic noise (y - x) convolved with a kernel H = S_real^(1/2) S_syn^(-1/2), S the (cross-)spectra, in units
    # of the level, of the real and the synthetic noise on recent real training pairs at their true levels, scaled so
    # that it keeps the synthetic noise's power (the temperature sets the level, H the shape). Fitted at each
    # validation after the temperature. Not in the paper or the official code: decoded prior draws need not have the
    # posterior's spectrum (a tuning camera: lag-1 0.59 / 0.65 and lag-2 0.29 / 0.31 against the real 0.65 / 0.65 and
    # 0.16 / 0.17; matched 0.64 / 0.65 and 0.16 / 0.17; docs/senm.md)
    spectrum: Literal["model", "matched"] = "model"
    # the synthetic noise's amplitude against the clean intensity: model (what the decoder gives) or matched: the
    # synthetic noise (after the spectrum's filter) multiplied pixel by pixel by a gain g(x), piecewise linear in the
    # clean value over ``amplitude_bins`` bins, g = sqrt(real / synthetic noise power) per bin on recent real
    # training pairs at their true levels, in units of the level (the synthetic side clipped to [0, 1] as the real
    # one is). Fitted at each validation after the spectrum's filter. Not in the paper or the official code: on
    # every camera checked, the decoded noise came out flat in the clean value while the real noise was up to twice
    # as strong in the darks as in the highlights (shot noise through a tone curve). Measured on a tuning camera:
    # the profile matched (dark / bright std within 4%, AKLD 0.171 -> 0.160), the DnCNN 0.05 dB worse at each of 3
    # seeds, hence off in the recipe (docs/senm.md). marginal: matched's gain, then each pixel's noise sent through a
    # monotone map of its clean value's bin (blended between bin centres), fitted so that the noise's quantiles per
    # bin become the real noise's (in units of the level): the mean offset, skew and tails a tone curve gives a
    # camera's noise (a concave curve makes the darks' noise biased and skewed low), which a decoder of Gaussian
    # draws leaves symmetric
    amplitude: Literal["model", "matched", "marginal"] = "model"
    amplitude_bins: Annotated[int, Field(ge=2, le=64)] = 8
    color_size: Annotated[int, Field(ge=1, le=15)] = 5  # the side (odd) of every fitted kernel (prior, likelihood, H)
    # refuse full synthesis when the content floor (std of D(z, mean z_n) - x on the validation pairs) is above this
    # fraction of the real noise std: the decoder's content error would land in the "noise"
    max_content_floor: Annotated[float, Field(gt=0)] = 0.5

    @property
    def groups(self) -> int:
        """Number of latent groups: the blocks of every scale plus one per downsampling between scales."""
        return sum(self.blocks_per_scale) + len(self.blocks_per_scale) - 1

    @model_validator(mode="after")
    def _sensible(self) -> SeNMConfig:
        problem = perceptual_problem(self)
        if problem:
            raise ValueError(problem)
        if self.color_size % 2 == 0:
            raise ValueError(f"color_size={self.color_size} must be odd (a centred kernel)")
        if self.width % 4:
            raise ValueError(f"width={self.width} must be a multiple of 4 (pixel-shuffle up-sampling)")
        return self
