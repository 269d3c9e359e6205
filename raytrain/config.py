"""Typed run configuration: YAML files plus ``--set a.b=c`` overrides, validated at load.

Every section forbids unknown keys and bounds its numbers, so a typo or an out-of-range value fails before Ray starts,
with a message that names the key (``data.noise.sigma: ...``).
"""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, model_validator

from raytrain.errors import ConfigError
from raytrain.methods.denoiser.config import TRAIN_DEFAULTS as DENOISER_TRAIN
from raytrain.methods.denoiser.config import DnCNNConfig, DRUNetConfig
from raytrain.methods.lir.config import OFFICIAL_RECIPE as LIR_OFFICIAL
from raytrain.methods.lir.config import TRAIN_DEFAULTS as LIR_TRAIN
from raytrain.methods.lir.config import LIRConfig
from raytrain.methods.senm.config import OFFICIAL_RECIPE as SENM_OFFICIAL
from raytrain.methods.senm.config import TRAIN_DEFAULTS as SENM_TRAIN
from raytrain.methods.senm.config import SeNMConfig

# Each method's defaults for the train section (lr, weight decay, schedule: the paper's or official recipe); a key the
# run's config sets wins, and a schedule given by the config replaces the method's whole
TRAIN_DEFAULTS: dict[str, dict] = {**DENOISER_TRAIN, "lir": LIR_TRAIN, "senm": SENM_TRAIN}
# What "official" means per method (a job spec's ``recipe: official`` is checked against it)
OFFICIAL_RECIPES: dict[str, dict[str, Any]] = {"lir": LIR_OFFICIAL, "senm": SENM_OFFICIAL}
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


class Patches(Strict):
    size: Annotated[int, Field(ge=8, le=1024)] = 64
    augment: bool = True  # the 8 dihedral transforms
    shuffle_buffer: Annotated[int, Field(ge=0)] = 256


class DataConfig(Strict):
    """Where images come from, how they are degraded, split into domains and cut into patches."""

    # "samples" (bundled, offline), a local folder, any URI Ray Data reads, or a paper dataset as distributed:
    # sidd:PATH, ldct:PATH (raytrain/data/datasets.py)
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
    paired: Paired = Field(default_factory=Paired)
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

    @model_validator(mode="after")
    def _dataset(self) -> DataConfig:
        if self.hu_window[0] >= self.hu_window[1]:
            raise ValueError(f"hu_window: low {self.hu_window[0]:g} must be below high {self.hu_window[1]:g}")
        from raytrain.data.datasets import dataset_kind

        if dataset_kind(self.source) and (self.noisy_source or self.synthetic):
            key = "noisy_source" if self.noisy_source else "synthetic"
            raise ValueError(f"{key}: data.source {self.source!r} is a dataset with its own noisy images; drop {key}")
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
    log_every: Annotated[int, Field(ge=1)] = 10
    val_every: Annotated[int, Field(ge=1)] = 200
    checkpoint_every: Annotated[int, Field(ge=1)] = 200
    keep_checkpoints: Annotated[int, Field(ge=1)] = 3
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
    max_failures: Annotated[int, Field(ge=-1)] = 1


class TrackingConfig(Strict):
    enabled: bool = True
    uri: str | None = None  # default: sqlite:///<workdir>/mlflow.db
    experiment: str = "raytrain"
    image_every_val: bool = True


MethodConfig = Annotated[
    Annotated[DnCNNConfig, Tag("dncnn")]
    | Annotated[DRUNetConfig, Tag("drunet")]
    | Annotated[LIRConfig, Tag("lir")]
    | Annotated[SeNMConfig, Tag("senm")],
    _tag("name", "dncnn"),
]


ARMS = ("senm", "gaussian", "heteroscedastic", "real_pairs", "all_real")


def with_method_train_defaults(data: Any, method_key: str = "method", train_key: str = "train") -> Any:
    """``data`` (a raw mapping) with the method's ``TRAIN_DEFAULTS`` under the keys its train section does not set."""
    if not isinstance(data, dict):
        return data
    method = data.get(method_key)
    name = method.get("name", "dncnn") if isinstance(method, dict) else getattr(method, "name", "dncnn")
    train = data.get(train_key, {})
    if not isinstance(train, dict):
        return data
    return {**data, train_key: {**copy.deepcopy(TRAIN_DEFAULTS.get(name, {})), **train}}


class Downstream(Strict):
    """The denoiser each arm of a pipeline trains (data: the run's, plus that arm's synthetic pairs)."""

    _method_defaults = model_validator(mode="before")(with_method_train_defaults)

    method: MethodConfig = Field(default_factory=DnCNNConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    patches: Patches | None = None  # the denoiser's patches; null: the noise model's data.patches
    scaling: ScalingSection | None = None  # the denoiser's workers; null: the noise model's scaling

    @model_validator(mode="after")
    def _denoiser(self) -> Downstream:
        if self.method.name not in ("dncnn", "drunet"):
            raise ValueError(f"pipeline.downstream.method.name must be dncnn or drunet (got {self.method.name})")
        return self


class PipelineSection(Strict):
    """``raytrain pipeline``: noise model -> synthesis -> downstream denoisers -> evaluation (SeNM-VAE, Sec. 4).

    Arms (each a downstream denoiser trained on the same split, scored on the same held-out real pairs):
    ``senm`` the real pairs + pairs synthesised by the trained SeNM-VAE; ``gaussian`` / ``heteroscedastic`` the real
    pairs + pairs from AWGN with the paired set's std / variance a*x+b fitted on the paired set; ``real_pairs`` only the
    few real pairs; ``all_real`` every training tile paired (the upper bound).
    """

    arms: tuple[Literal[ARMS], ...] = ARMS  # type: ignore[valid-type]
    level: Literal["prior"] | Annotated[float, Field(gt=0, le=255)] = "prior"  # synthesis level (0..255) or sampled
    # of z_n's prior draws (0: the prior means; auto: calibrated on the training pairs); null: the noise model's
    # method.temperature
    temperature: Literal["auto"] | Annotated[float, Field(ge=0, le=10)] | None = None
    copies: Annotated[int, Field(ge=1, le=64)] = 1  # synthetic noisy versions of each clean source tile
    # the synthetic arms' data.synthetic_fraction: share of their paired patches cut from synthetic pairs
    synthetic_fraction: Annotated[float, Field(ge=0, le=1)] | None = None
    # full synthesis from a noise model over method.max_content_floor is refused unless this is true
    allow_content_floor: bool = False
    downstream: Downstream = Field(default_factory=Downstream)

    @model_validator(mode="after")
    def _arms(self) -> PipelineSection:
        if not self.arms or len(set(self.arms)) != len(self.arms):
            raise ValueError(f"pipeline.arms must be non-empty and without repeats (got {list(self.arms)})")
        return self


NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"  # a folder name: no separators, no leading dot (no '..')


def check_name(name: str, what: str) -> str:
    """A run, sweep or ablation name: it becomes a folder under the workdir, so it may not leave it."""
    if not re.fullmatch(NAME_PATTERN, name or ""):
        raise ConfigError(f"{what} {name!r}: use letters, digits, '_', '.' and '-' (no '/', no leading '.'); "
                          "it names a folder under the workdir")  # fmt: skip
    return name


class RunConfig(Strict):
    """The whole run: one YAML file."""

    name: Annotated[str, Field(min_length=1, pattern=NAME_PATTERN)] = "raytrain"
    workdir: str = "runs"  # MLflow store, Ray storage and outputs live under it
    seed: Annotated[int, Field(ge=0)] = 0
    address: str | None = None  # Ray cluster address; null starts an embedded local Ray
    storage_path: str | None = None  # shared storage for checkpoints (NFS/S3 URI for multi-node); default workdir/ray
    method: MethodConfig = Field(default_factory=DnCNNConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    scaling: ScalingSection = Field(default_factory=ScalingSection)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    pipeline: PipelineSection | None = None  # used by `raytrain pipeline` only

    _method_defaults = model_validator(mode="before")(with_method_train_defaults)

    @model_validator(mode="after")
    def _consistent(self) -> RunConfig:
        if self.data.paired.count is not None and self.data.split == "two_domain":
            raise ValueError("data.paired is meaningless with data.split=two_domain (no pairs are kept)")
        if self.data.synthetic_fraction is not None and not self.data.synthetic:
            raise ValueError("data.synthetic_fraction needs data.synthetic (a folder of synthetic pairs)")
        if self.data.tiles is not None and self.data.tiles < self.data.patches.size:
            raise ValueError(f"data.tiles={self.data.tiles} is smaller than data.patches.size={self.data.patches.size}")
        if self.pipeline is not None and self.method.name != "senm":
            raise ValueError("pipeline: needs method.name=senm (the noise model the pipeline trains first)")
        if not any(self.data.mix.values()):
            raise ValueError("data.mix: at least one domain needs a probability > 0")
        if getattr(self.method, "norm", None) == "bn" and self.train.batch_size == 1:
            raise ValueError("method.norm=bn with train.batch_size=1 (per worker): batch statistics of a single image; "
                             "use a batch of 2 or more per worker, or method.norm=in / none")  # fmt: skip
        if self.method.name == "senm" and not self.data.mix.get("paired", 0) > 0:
            raise ValueError("data.mix.paired: SeNM-VAE needs its paired domain (eq. 11); give it a probability > 0")
        return self


# ------------------------------------------------------------------------------------------------------- loading
def format_validation_error(err: ValidationError, origin: str) -> str:
    """One line naming each failing key: ``cfg.yaml: data.noise.sigma: Input should be >= 0 (got -5)``."""
    parts: dict[str, str] = {}
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if not _is_branch_name(p))
        got = e.get("input")
        shown = "" if isinstance(got, dict) or e["type"] == "missing" else f" (got {got!r})"
        msg = e["msg"].replace(" found using get()", "").removeprefix("Value error, ")
        parts.setdefault(loc or "<root>", f"{msg}{shown}")  # a union reports each branch: keep the first
    return f"{origin}: " + "; ".join(f"{k}: {v}" for k, v in parts.items())


def _is_branch_name(part: Any) -> bool:
    """pydantic puts union branch names (tags, ``constrained-float``, ``tuple[...]``) into error locations."""
    return isinstance(part, str) and (
        part in _UNION_TAGS or "[" in part or part.startswith(("constrained-", "function-"))
    )


_UNION_TAGS = {"awgn", "poisson", "poisson_gaussian", "camera", "dncnn", "drunet", "lir", "senm"}


def parse_override(item: str) -> tuple[list[str], Any]:
    """``a.b=c`` -> (["a", "b"], yaml-parsed c)."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. train.steps=100")
    key, raw = item.split("=", 1)
    path = [p for p in key.strip().split(".") if p]
    if not path:
        raise ConfigError(f"--set {item!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {item!r}: value is not valid YAML ({exc.__class__.__name__})") from None
    return path, value


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Return a copy of ``raw`` with each ``a.b=c`` applied; the result is validated by :func:`load_config`."""
    out = copy.deepcopy(raw)
    for item in overrides:
        path, value = parse_override(item)
        node = out
        for part in path[:-1]:
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"--set {item!r}: {part!r} is a value, not a section")
            node = nxt
        if retagged(tuple(path[:-1]), node, {path[-1]: value}):
            node.clear()  # another noise kind / method: the old one's keys do not apply
        for other in EXCLUSIVE.get(tuple(path), ()):
            node.pop(other, None)  # paired.fraction replaces paired.count and vice versa
        node[path[-1]] = value
    return out


def read_yaml(path: str | Path) -> dict:
    """A YAML mapping from ``path``; ``extends: base.yaml`` (relative to the file) deep-merges it over that base."""
    return _read_yaml(Path(path), ())


def load_yaml_file(path: str | Path, what: str = "config file") -> Any:
    """The parsed YAML of a file; a missing file or bad YAML is one ConfigError naming the file (and line)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: {what} not found")
    try:
        return yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{p}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None


def _read_yaml(p: Path, chain: tuple[Path, ...]) -> dict:
    if not p.is_file():
        where = f" (extended by {chain[-1]})" if chain else ""
        raise ConfigError(f"{p}: config file not found{where}")
    if p.resolve() in chain:
        raise ConfigError(f"{p}: `extends` loops back to itself ({' -> '.join(str(c) for c in chain)})")
    data = load_yaml_file(p)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of sections at the top level, got {type(data).__name__}")
    base = data.pop("extends", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"{p}: extends: expected a file name, got {base!r}")
    return deep_merge(_read_yaml(p.parent / base, (*chain, p.resolve())), data)


def deep_merge(base: dict, over: dict, path: tuple[str, ...] = ()) -> dict:
    """``over`` on top of ``base``: mappings merge key by key, anything else replaces; a tagged section switched to
    another kind (``data.noise``, ``method``) is replaced whole."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        sub = (*path, k)
        merge = isinstance(v, dict) and isinstance(out.get(k), dict) and not retagged(sub, out[k], v)
        out[k] = deep_merge(out[k], v, sub) if merge else copy.deepcopy(v)
    return out


# Tagged unions: section path -> (tag key, the kind a section without the key means)
TAGGED = {("data", "noise"): ("kind", "awgn"), ("method",): ("name", "dncnn"),
          ("pipeline", "downstream", "method"): ("name", "dncnn")}  # fmt: skip


EXCLUSIVE = {("data", "paired", "fraction"): ("count",), ("data", "paired", "count"): ("fraction",)}


def retagged(path: tuple[str, ...], old: dict, new: dict) -> bool:
    """Whether ``new`` switches the tagged section at ``path`` to another kind (the old kind's keys then go)."""
    if path not in TAGGED:
        return False
    tag, default = TAGGED[path]
    return tag in new and new[tag] != old.get(tag, default)


def validate(raw: dict, origin: str = "config") -> RunConfig:
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, origin)) from None


def weight_files(cfg: RunConfig) -> dict[str, str]:
    """The local weight files the run's method will load (config key -> path)."""
    m, out = cfg.method, {}
    if getattr(m, "scm", False) and getattr(m, "scm_backbone", "") == "pretrained" and m.scm_weights:
        out["method.scm_weights"] = m.scm_weights
    if getattr(m, "perceptual", "none") != "none" and m.perceptual_backbone == "pretrained":
        out["method.perceptual_weights"] = m.perceptual_weights
        if m.perceptual == "lpips":
            out["method.lpips_weights"] = m.lpips_weights
    return {k: v for k, v in out.items() if v}


def check_weight_files(cfg: RunConfig) -> None:
    """Refuse (one line, before any worker starts) a run whose weight files are not on this node."""
    for key, path in weight_files(cfg).items():
        if not Path(path).is_file():
            raise ConfigError(f"{key}: {path} not found (a local file; no download happens)")


def recipe_deviations(cfg: RunConfig, recipe: dict[str, Any]) -> list[str]:
    """``key: got X, official Y`` for each entry of a method's ``OFFICIAL_RECIPE`` the config does not match."""
    flat = flatten(cfg) | {"global_batch": cfg.train.batch_size * cfg.scaling.num_workers}
    out = []
    for key, want in recipe.items():
        got = flat.get(key)
        same = (list(got) == list(want)) if isinstance(want, list) and isinstance(got, (list, tuple)) else (
            math.isclose(got, want, rel_tol=1e-9) if isinstance(want, float) and isinstance(got, (int, float))
            else got == want)  # fmt: skip
        if not same:
            out.append(f"{key}: {got!r} (official {want!r})")
    return out


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> RunConfig:
    """Load a YAML config (or the defaults when ``path`` is None), apply overrides, validate."""
    raw = read_yaml(path) if path is not None else {}
    raw = apply_overrides(raw, overrides or [])
    return validate(raw, str(path) if path is not None else "defaults")


def to_raw(cfg: RunConfig) -> dict:
    """The JSON-able form that re-validates to the same config: only what the user set (defaults refill on load),
    so checks that depend on which keys were given (LIR's ablation sanity checks) hold after a round trip."""
    return cfg.model_dump(mode="json", exclude_unset=True)


def flatten(cfg: BaseModel | dict, prefix: str = "") -> dict[str, Any]:
    """Dotted-key view of a config, for MLflow params and search spaces."""
    data = cfg.model_dump(mode="json") if isinstance(cfg, BaseModel) else cfg
    out: dict[str, Any] = {}
    for key, val in data.items():
        name = f"{prefix}{key}"
        if isinstance(val, dict) and val:
            out.update(flatten(val, name + "."))
        else:
            out[name] = val
    return out
