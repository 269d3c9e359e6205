"""The sections of a run config: noise, data, train (with its lr schedule), scaling, tracking; the
methods' train defaults and official recipes."""

from __future__ import annotations

import math
import warnings
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, Tag, model_validator

from raytrain.methods.registry import specs

# Each method's defaults for the train section (lr, weight decay, schedule: the paper's or official recipe); a key the
# run's config sets wins, and a schedule given by the config replaces the method's whole
TRAIN_DEFAULTS: dict[str, dict] = {name: s.train_defaults for name, s in specs().items()}
# What "official" means per method (a job spec's ``recipe: official`` is checked against it)
OFFICIAL_RECIPES: dict[str, dict[str, Any]] = {name: s.official for name, s in specs().items() if s.official}
# The smallest lr multiplier a schedule may reach by half its run: below it the second half learns nothing
MIN_LR_FACTOR_AT_HALF = 1e-3


class Strict(BaseModel):
    """Base for every config section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# ----------------------------------------------------------------------------------------------------------- noise
class AWGN(Strict):
    """Additive white Gaussian noise on the 0..255 scale; ``sigma: [lo, hi]`` draws sigma ~ U[lo, hi] per image.
    ``clip`` / ``quantize``: the noisy image clipped to [0, 1] / also rounded to 8 bits, as the official LIR data is."""

    kind: Literal["awgn"] = "awgn"
    sigma: (
        Annotated[float, Field(ge=0, le=255)]
        | tuple[Annotated[float, Field(ge=0, le=255)], Annotated[float, Field(ge=0, le=255)]]
    ) = 25.0
    # the official LIR data (skimage random_noise, saved as 8-bit PNG) is clipped to [0, 1] and quantised to 8 bits;
    # DnCNN's synthetic AWGN is neither (the default)
    clip: bool = False
    quantize: bool = False  # round to 8 bits (implies clip)

    @model_validator(mode="after")
    def _ordered(self) -> AWGN:
        if isinstance(self.sigma, tuple) and self.sigma[0] > self.sigma[1]:
            raise ValueError(f"sigma range [{self.sigma[0]}, {self.sigma[1]}] has low > high")
        return self


class Poisson(Strict):
    """Shot noise. ``peak: null`` is skimage's ``random_noise(mode="poisson")`` on the 8-bit image (counts = 0..255);
    a number scales the image so that white has that many photons (lower peak = noisier)."""

    kind: Literal["poisson"] = "poisson"
    peak: Annotated[float, Field(gt=0)] | None = None
    clip: bool = False  # peak: null is always clipped (skimage)
    quantize: bool = False  # round to 8 bits (implies clip)


class PoissonGaussian(Strict):
    """Poisson shot noise at ``peak`` photons for white plus Gaussian read noise ``sigma`` (0..255 scale)."""

    kind: Literal["poisson_gaussian"] = "poisson_gaussian"
    peak: Annotated[float, Field(gt=0)] = 30.0
    sigma: Annotated[float, Field(ge=0, le=255)] = 5.0
    clip: bool = False
    quantize: bool = False  # round to 8 bits (implies clip)


class Camera(Strict):
    """Camera-like noise: signal-dependent shot + read noise in linear space, spatial correlation as after
    demosaicing, gamma, 8-bit quantisation. A preset fills the numbers; explicit numbers override it."""

    kind: Literal["camera"] = "camera"
    preset: Literal["low", "mid", "high"] = "mid"
    shot: Annotated[float, Field(ge=0)] | None = None  # variance per unit linear signal
    read: Annotated[float, Field(ge=0)] | None = None  # variance floor (linear, 0..1 scale)
    correlation: Annotated[float, Field(ge=0, le=3)] | None = None  # Gaussian blur sigma of the noise field, px
    gamma: Annotated[float, Field(gt=0, le=5)] = 2.2


def _tag(field: str, default: str):
    """Discriminator that defaults a missing tag, so ``--set data.noise.sigma=10`` alone means AWGN."""

    def get(value: Any) -> str:
        if isinstance(value, dict):
            return value.get(field, default)
        return getattr(value, field, default)

    return Discriminator(get)


NoiseConfig = Annotated[
    Annotated[AWGN, Tag("awgn")]
    | Annotated[Poisson, Tag("poisson")]
    | Annotated[PoissonGaussian, Tag("poisson_gaussian")]
    | Annotated[Camera, Tag("camera")],
    _tag("kind", "awgn"),
]


# ------------------------------------------------------------------------------------------------------------ data
class Paired(Strict):
    """How much of the training collection is paired: a fraction in (0, 1] or a count (not both)."""

    fraction: Annotated[float, Field(gt=0, le=1)] | None = None
    count: Annotated[int, Field(ge=1)] | None = None

    @model_validator(mode="after")
    def _one(self) -> Paired:
        if self.fraction is not None and self.count is not None:
            raise ValueError("give paired.fraction or paired.count, not both")
        if self.fraction is None and self.count is None:
            self.fraction = 1.0
        return self


class Unpaired(Strict):
    """How many of the split's unpaired images (tiles) each unpaired domain keeps (SeNM-VAE Table 7: 0 / 96 / 960):
    ``count`` for both the clean-only source and the noisy-only target, ``source`` / ``target`` for one of them;
    null keeps all. A domain capped to 0 is dropped from the run (as a 0 in ``data.mix``)."""

    count: Annotated[int, Field(ge=0)] | None = None
    source: Annotated[int, Field(ge=0)] | None = None
    target: Annotated[int, Field(ge=0)] | None = None

    def cap(self, domain: str) -> int | None:
        """The cap of ``source`` or ``target``: its own key, else ``count``."""
        own = getattr(self, domain)
        return own if own is not None else self.count


Augment = Literal["dihedral", "flips", "none", "auto"]


def augment_name(v: Any) -> Any:
    """``augment: true`` / ``false`` as before: the 8 dihedral transforms / none (names pass through)."""
    return {True: "dihedral", False: "none"}.get(v, v) if isinstance(v, bool) else v


class Patches(Strict):
    size: Annotated[int, Field(ge=8, le=1024)] = 64
    # dihedral: the 8 rotations and flips; flips: the 4 that keep the image axes (identity, flips, 180 degrees), for
    # noise tied to the sensor's rows and columns (a 90-degree turn moves row-correlated noise into the columns);
    # none; auto: dihedral when the paired noise is isotropic (its lag-1 correlation along rows and along columns
    # within 0.1), flips when not, dihedral without paired data. true / false = dihedral / none
    augment: Annotated[Augment, BeforeValidator(augment_name)] = "dihedral"
    shuffle_buffer: Annotated[int, Field(ge=0)] = 256


class DataConfig(Strict):
    """Where images come from, how they are degraded, split into domains and cut into patches."""

    # "samples" (bundled, offline), a local folder, any URI Ray Data reads, or a paper dataset as distributed:
    # sidd:PATH, ldct:PATH, sr:PATH (RealSR / DRealSR / AIM19-style HR and LR folders; raytrain/data/datasets.py)
    source: str = "samples"
    noisy_source: str | None = None  # folder of real noisy images with the same names as ``source`` (real pairs)
    # a folder written by `raytrain synthesize` (clean/ and noisy/ with the same names): its pairs join the paired
    # domain for training (never validation), beside the real pairs of the split
    synthetic: str | None = None
    # share of paired patches drawn from the data.synthetic pairs (the rest from the real pairs); null: in proportion
    # to the image counts. Keeps a few real pairs from being drowned by many synthetic ones.
    synthetic_fraction: Annotated[float, Field(ge=0, le=1)] | None = None
    color: Literal["gray", "rgb"] = "gray"
    noise: NoiseConfig = Field(default_factory=AWGN)
    # False: each image has one fixed noisy realisation (as real scarce pairs do). True: paired patches get fresh
    # synthetic noise every time (unlimited synthetic pairs, the usual DnCNN recipe). Ignored for real pairs.
    resample_noise: bool = False
    split: Literal["semi", "two_domain"] = "semi"  # semi: paired/source/target; two_domain: LIR's disjoint halves
    # which images are held out, paired or unpaired, and their fixed noise realisations; null: the run's seed (set it
    # to keep one split while the seed varies only the training: nets' init, patch order)
    split_seed: Annotated[int, Field(ge=0)] | None = None
    # seeded: validation and paired images drawn in a seeded order; listed: in the collection's (name) order, the
    # last val_images held out and the first paired.count paired (SeNM-VAE on AIM19 / NTIRE20: the first 10 of the
    # 100 validation pairs paired, the other 90 scored)
    split_order: Literal["seeded", "listed"] = "seeded"
    # folders of unpaired images that join the split's clean-only (source) and noisy-only (target) domains: a
    # dataset's own unpaired sets (AIM19: DIV2K's clean HR images and the degraded LR ones). Read as they are (no
    # resizing; data.unpaired's caps do not apply to them); with data.tiles they are tiled too (clean_only at tiles x
    # scale)
    clean_only: str | None = None
    noisy_only: str | None = None
    paired: Paired = Field(default_factory=Paired)
    unpaired: Unpaired = Field(default_factory=Unpaired)  # caps on the clean-only / noisy-only domains' sizes
    val_images: Annotated[int, Field(ge=1)] = 2
    val_crop: Annotated[int, Field(ge=16)] | None = 128  # centre crop of each validation image; null = whole image
    mix: dict[Literal["paired", "source", "target"], Annotated[float, Field(ge=0)]] = Field(
        default_factory=lambda: {"paired": 1.0, "source": 1.0, "target": 1.0}
    )
    patches: Patches = Field(default_factory=Patches)
    max_size: Annotated[int, Field(ge=16)] | None = 512  # longer side of each image is resized down to this
    # cut the training images into tiles of this size and split the domains by tile: paired.count then counts
    # tiles, as the papers count paired patches (SeNM-VAE: 10 / 96 / 960 of SIDD's crops); validation stays whole
    tiles: Annotated[int, Field(ge=8, le=4096)] | None = None
    # CT (data.source ldct:PATH): the Hounsfield window mapped to [0, 1] (clipped; PSNR/SSIM then use the window as
    # their data range) and the offset of 16-bit PNG/TIFF slices (HU = value - offset)
    hu_window: tuple[float, float] = (-160.0, 240.0)
    hu_offset: float = 1024.0
    # super-resolution (SeNM-VAE Tables 4-5): each pair is (HR, LR) with the LR image 1/scale of the HR one's size;
    # patches.size, tiles and val_crop count LR pixels (HR patches are scale x larger). An image source with a noise
    # model degrades as y = noise(B(x)) (B: bicubic down-sampling), sr:PATH reads real HR/LR pairs. 1: denoising
    scale: Annotated[int, Field(ge=1, le=8)] = 1
    # with scale > 1: every pair's clean image becomes its HR image bicubic-downscaled to the LR size, the paper's
    # B(x) in y = B(x) + n': the pairs a noise model of the LR camera learns from (SeNM-VAE's SR noise model)
    downscale_clean: bool = False
    # large sets (SIDD Medium, DIV2K-sized clean sets): true, the training images stay in their files and Ray Data's
    # crop tasks read each one when they cut its patches (stream_patches patches per read, cached per process);
    # auto: true when the images would take more than 4 GiB as float32 (from the files' headers); false: every image
    # is read into memory first. Local folders, sidd: folders and sr: sets stream; samples, URIs, CT slices and
    # SIDD's .mat blocks are always read (validation images too: they are few)
    stream: Literal["auto"] | bool = "auto"
    stream_patches: Annotated[int, Field(ge=1, le=1024)] = 64
    # a store made by `raytrain data prepare SRC DST` (local or a URI every node reads): the image files under SRC
    # are read from their decoded arrays there (no decoding; a local store is memory-mapped, and 8-bit images stream
    # as uint8); data.source etc. still name the files, which are checked against the store's manifest (a changed
    # or new file is an error naming it). null: every image is decoded from its file
    prepared: str | None = None

    @model_validator(mode="after")
    def _dataset(self) -> DataConfig:
        if self.hu_window[0] >= self.hu_window[1]:
            raise ValueError(f"hu_window: low {self.hu_window[0]:g} must be below high {self.hu_window[1]:g}")
        from raytrain.data.datasets import dataset_kind

        kind = dataset_kind(self.source)
        if kind and (self.noisy_source or self.synthetic):
            key = "noisy_source" if self.noisy_source else "synthetic"
            raise ValueError(f"{key}: data.source {self.source!r} is a dataset with its own noisy images; drop {key}")
        if kind and (kind[0] == "sr") != (self.scale > 1):
            raise ValueError(
                f"scale: data.source {self.source!r} needs data.scale > 1 (the LR images' factor)"
                if kind[0] == "sr"
                else f"scale: {self.scale} is for SR sources (sr:PATH, an image folder), not {kind[0]}:"
            )
        if self.downscale_clean and self.scale == 1:
            raise ValueError("downscale_clean: only with data.scale > 1 (super-resolution pairs)")
        if self.resample_noise and self.scale > 1:
            raise ValueError("resample_noise: not with data.scale > 1 (each LR image has one fixed realisation)")
        return self


# ----------------------------------------------------------------------------------------------------------- train
class Schedule(Strict):
    kind: Literal["constant", "step", "multistep", "exponential", "cosine"] = "step"
    step_size: Annotated[int, Field(ge=1)] = 1000  # for kind=step
    milestones: tuple[Annotated[int, Field(ge=1)], ...] = ()  # for kind=multistep (SeNM-VAE: 150k, 225k, 270k, 285k)
    gamma: Annotated[float, Field(gt=0, le=1)] = 0.5  # step/multistep: factor at each; exponential: per step

    @model_validator(mode="after")
    def _milestones(self) -> Schedule:
        if self.kind == "multistep" and list(self.milestones) != sorted(set(self.milestones)):
            raise ValueError(f"milestones {list(self.milestones)} must increase strictly")
        return self


def lr_factor(schedule: Schedule, steps: int, step: int) -> float:
    """The multiplier of ``train.lr`` after ``step`` scheduler steps, as :func:`raytrain.methods.base.make_scheduler`'s
    torch scheduler computes it (a test holds the two together)."""
    s = schedule
    if s.kind == "step":
        return s.gamma ** (step // s.step_size)
    if s.kind == "multistep":
        return s.gamma ** sum(step >= m for m in s.milestones)
    if s.kind == "exponential":
        return s.gamma**step
    if s.kind == "cosine":
        return 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps))
    return 1.0


def _describe(s: Schedule) -> str:
    keys = {"step": ("step_size", "gamma"), "multistep": ("milestones", "gamma"), "exponential": ("gamma",)}
    return ", ".join([f"kind={s.kind}", *(f"{k}={list(v) if isinstance(v := getattr(s, k), tuple) else v}"
                                          for k in keys.get(s.kind, ()))])  # fmt: skip


class TrainConfig(Strict):
    """Optimisation. lr, weight_decay and schedule default to the method's recipe (``TRAIN_DEFAULTS``)."""

    steps: Annotated[int, Field(ge=1)] = 2000
    batch_size: Annotated[int, Field(ge=1)] = 16  # per worker (the global batch: x scaling.num_workers)
    lr: Annotated[float, Field(gt=0, le=1)] = 1e-3
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    schedule: Schedule = Field(default_factory=Schedule)
    grad_clip: Annotated[float, Field(gt=0)] | None = None
    grad_skip: Annotated[float, Field(gt=0)] | None = None  # skip an update whose grad norm exceeds this (vdvae)
    # decay of an exponential moving average of the inference nets' parameters (BasicSR / vdvae use 0.999; about
    # 1 / (1 - ema) steps are averaged); validation and the exported weights use it. None: off
    ema: Annotated[float, Field(gt=0, lt=1)] | None = None
    # the training steps' arithmetic: fp32; bf16 (autocast, CPU or GPU); fp16 (autocast + a GradScaler, GPU only)
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    channels_last: bool = False  # nets and batches in channels-last memory (faster convolutions on recent GPUs)
    # torch.compile every net in place (TorchInductor: a C++ compiler on CPU, Triton on GPU; checkpoints unchanged);
    # the first steps pay the compilation
    compile: bool = False
    log_every: Annotated[int, Field(ge=1)] = 10
    val_every: Annotated[int, Field(ge=1)] = 200
    checkpoint_every: Annotated[int, Field(ge=1)] = 200
    keep_checkpoints: Annotated[int, Field(ge=1)] = 3
    # which checkpoint the run stands for (the pipeline's next stage, eval / denoise of the run's folder, the weights
    # artifact and the MLflow model): "auto", the best by the method's headline validation metric (PSNR max,
    # SeNM-VAE's noise KLD min); "METRIC[:min|max]" (a validation metric, e.g. val_ssim:max; the mode defaults to max
    # for psnr / ssim, else min); "last", the newest. Kept beside the newest, which resume always uses; every
    # checkpoint step also validates when a metric is named
    keep_best: Annotated[str, Field(pattern=r"^(auto|last|val_[A-Za-z0-9_]+(:(min|max))?)$")] = "auto"
    max_bad_steps: Annotated[int, Field(ge=1)] = 20  # consecutive NaN/Inf steps before the run fails
    max_minutes: Annotated[float, Field(gt=0)] | None = None  # time budget: stop (validate + checkpoint) when spent
    resume_from: str | None = None  # a checkpoint directory to start from (when Ray has none for this run)
    fail_at_step: Annotated[int, Field(ge=1)] | None = None  # fault injection: rank 0 dies once at this step

    @model_validator(mode="after")
    def _lr_lives(self) -> TrainConfig:
        half = self.steps // 2
        f = lr_factor(self.schedule, self.steps, half)
        if f < MIN_LR_FACTOR_AT_HALF:
            raise ValueError(
                f"schedule {_describe(self.schedule)} decays the lr to {f:.1e} x train.lr by step {half} of "
                f"{self.steps} (below {MIN_LR_FACTOR_AT_HALF:g} before half the run): lengthen "
                "schedule.step_size / milestones, raise gamma, or use schedule.kind=cosine"
            )
        return self


class ScalingSection(Strict):
    num_workers: Annotated[int, Field(ge=1, le=1024)] = 2
    use_gpu: bool = False
    cpus_per_worker: Annotated[float, Field(gt=0)] = 1.0
    resources_per_worker: dict[str, Annotated[float, Field(ge=0)]] = Field(default_factory=dict)
    max_failures: Annotated[int, Field(ge=-1)] = 1  # worker-group restarts of a TorchTrainer run
    # a Tune trial of ONE worker: auto runs the training loop in the trial's own process (no worker group, no process
    # group: seconds to the first step; a failure fails the trial, `--resume` reruns it from its last checkpoint);
    # trainer: a TorchTrainer per trial, as multi-worker trials always are (max_failures restarts apply)
    trial_runner: Literal["auto", "trainer"] = "auto"
    # on a cluster that lacks the CPUs / GPUs the worker group and its patch streams need: wait this long for them
    # (an autoscaling cluster is asked for them and adds nodes) before refusing; 0: refuse at once
    wait_for_nodes_s: Annotated[float, Field(ge=0, le=86400)] = 0


with warnings.catch_warnings():  # `register` shadows ABCMeta.register on the class, never on a config's values
    warnings.filterwarnings("ignore", message='Field name "register"')

    class TrackingConfig(Strict):
        enabled: bool = True
        # an MLflow server (http://HOST:5000, what a cluster needs: every worker logs into it); default: the
        # MLFLOW_TRACKING_URI environment variable, else sqlite:///<workdir>/mlflow.db (one machine only)
        uri: str | None = None
        experiment: str = "raytrain"
        image_every_val: bool = True
        # register the run's model (the checkpoint train.keep_best picks, logged as the run's MLflow model `model/`) in
        # MLflow's model registry under this name: a new version per run (models:/NAME/VERSION). A pipeline registers
        # its noise model as NAME-noise and each arm's denoiser as NAME-ARM
        register: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")] | None = None


__all__ = [
    "TRAIN_DEFAULTS",
    "OFFICIAL_RECIPES",
    "MIN_LR_FACTOR_AT_HALF",
    "Strict",
    "AWGN",
    "Poisson",
    "PoissonGaussian",
    "Camera",
    "_tag",
    "NoiseConfig",
    "Paired",
    "Patches",
    "DataConfig",
    "Schedule",
    "lr_factor",
    "_describe",
    "TrainConfig",
    "ScalingSection",
    "TrackingConfig",
]
