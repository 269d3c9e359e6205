"""The whole run config (:class:`RunConfig`): the method (one of the registered methods' configs), the
sections, the pipeline section, run names."""

from __future__ import annotations

import copy
import re
from typing import Annotated, Any, Literal, Union

from pydantic import Field, Tag, model_validator

from raytrain.config.sections import (
    TRAIN_DEFAULTS,
    DataConfig,
    Patches,
    ScalingSection,
    Strict,
    TrackingConfig,
    TrainConfig,
    _tag,
)
from raytrain.errors import ConfigError
from raytrain.methods.registry import specs

DEFAULT_METHOD = "dncnn"  # the method of a config that names none (the embedded defaults)


def default_method() -> Any:
    """The default method's config section at its defaults."""
    return specs()[DEFAULT_METHOD].config()


# the ``method:`` section: one of the registered methods' configs, told apart by ``name`` (dncnn when absent)
MethodConfig = Annotated[
    Union[tuple(Annotated[s.config, Tag(name)] for name, s in specs().items())],  # noqa: UP007 - a built union
    _tag("name", DEFAULT_METHOD),
]


ARMS = ("senm", "gaussian", "heteroscedastic", "real_pairs", "all_real", "bicubic")
DEFAULT_ARMS = ARMS[:5]  # bicubic: super-resolution only
SR_METHODS = ("rrdb",)  # methods that train on (HR, LR) pairs (data.scale > 1)


def with_method_train_defaults(data: Any, method_key: str = "method", train_key: str = "train") -> Any:
    """``data`` (a raw mapping) with the method's ``TRAIN_DEFAULTS`` under the keys its train section does not set."""
    if not isinstance(data, dict):
        return data
    method = data.get(method_key)
    name = method.get("name", DEFAULT_METHOD) if isinstance(method, dict) else getattr(method, "name", DEFAULT_METHOD)
    train = data.get(train_key, {})
    if not isinstance(train, dict):
        return data
    return {**data, train_key: {**copy.deepcopy(TRAIN_DEFAULTS.get(name, {})), **train}}


class Downstream(Strict):
    """The denoiser each arm of a pipeline trains (data: the run's, plus that arm's synthetic pairs)."""

    _method_defaults = model_validator(mode="before")(with_method_train_defaults)

    method: MethodConfig = Field(default_factory=default_method)
    train: TrainConfig = Field(default_factory=TrainConfig)
    patches: Patches | None = None  # the denoiser's patches; null: the noise model's data.patches
    scaling: ScalingSection | None = None  # the denoiser's workers; null: the noise model's scaling

    @model_validator(mode="after")
    def _denoiser(self) -> Downstream:
        if self.method.name not in ("dncnn", "drunet", *SR_METHODS):
            raise ValueError(f"pipeline.downstream.method.name must be dncnn, drunet or rrdb (got {self.method.name})")
        return self


class LPIPSFiles(Strict):
    """LPIPS for the pipeline's evaluation table (SeNM-VAE Tables 4-5 report it): local files, no downloads."""

    backbone: str  # torchvision AlexNet .pth (alexnet-owt-7be5be79.pth), or "random" (tests only: meaningless numbers)
    lin: str | None = None  # the LPIPS v0.1 linear layers (alex.pth of the lpips package); needed unless random

    @model_validator(mode="after")
    def _files(self) -> LPIPSFiles:
        if self.backbone != "random" and self.lin is None:
            raise ValueError(
                "pipeline.lpips.lin: the LPIPS v0.1 linear layers (alex.pth) are needed beside the backbone"
            )
        return self


class PipelineSection(Strict):
    """``raytrain pipeline``: noise model -> synthesis -> downstream denoisers -> evaluation (SeNM-VAE, Sec. 4).

    Arms (each a downstream denoiser trained on the same split, scored on the same held-out real pairs):
    ``senm`` the real pairs + pairs synthesised by the trained SeNM-VAE; ``gaussian`` / ``heteroscedastic`` the real
    pairs + pairs from AWGN with the paired set's std / variance a*x+b fitted on the paired set; ``real_pairs`` only the
    few real pairs; ``all_real`` every training tile paired (the upper bound). Super-resolution (``data.scale`` > 1,
    downstream rrdb): the noise models learn the LR camera on (B(HR), LR) pairs and synthesise LR = noise(B(HR)) from
    the clean-only HR images; ``bicubic`` the real pairs + (HR, B(HR)) pairs without noise (the bicubic-only arm).
    """

    arms: tuple[Literal[ARMS], ...] = DEFAULT_ARMS  # type: ignore[valid-type]
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
    lpips: LPIPSFiles | None = None  # an LPIPS column in the table (null: PSNR and SSIM only)

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
    # MLflow's default store, Ray storage and outputs live under it: a local folder, one every node mounts, or a URI
    # (s3://bucket/prefix, gs://..., with pyarrow's options in the query; then tracking.uri must name a server)
    workdir: str = "runs"
    seed: Annotated[int, Field(ge=0)] = 0
    address: str | None = None  # Ray cluster address; null starts an embedded local Ray
    # Ray's storage for checkpoints, and the folder of pipelines and sweeps: on a cluster a URI (s3://bucket/runs)
    # or a folder every node mounts; default workdir/ray
    storage_path: str | None = None
    method: MethodConfig = Field(default_factory=default_method)
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
        if self.train.precision == "fp16" and not self.scaling.use_gpu:
            raise ValueError("train.precision=fp16 needs a GPU (scaling.use_gpu=true: its GradScaler and kernels are "
                             "CUDA's); on CPU use train.precision=bf16")  # fmt: skip
        sr = self.method.name in SR_METHODS
        if self.data.scale > 1 and not (sr or self.data.downscale_clean or self.pipeline is not None):
            raise ValueError(f"data.scale={self.data.scale}: method {self.method.name} trains on same-size pairs; "
                             "use method.name=rrdb (super-resolution) or data.downscale_clean=true (a noise model of "
                             "the LR camera)")  # fmt: skip
        if sr and self.data.downscale_clean:
            raise ValueError("data.downscale_clean: an SR net trains on (HR, LR) pairs; drop it for method rrdb")
        if self.pipeline is not None:
            down_sr = self.pipeline.downstream.method.name in SR_METHODS
            if down_sr != (self.data.scale > 1):
                raise ValueError("pipeline.downstream.method.name: rrdb goes with data.scale > 1 and dncnn / drunet "
                                 f"with data.scale 1 (got {self.pipeline.downstream.method.name}, scale "
                                 f"{self.data.scale})")  # fmt: skip
            if "bicubic" in self.pipeline.arms and self.data.scale == 1:
                raise ValueError("pipeline.arms: bicubic is the super-resolution baseline (data.scale > 1)")
            if self.data.downscale_clean:
                raise ValueError("data.downscale_clean: the pipeline sets it for its noise model; drop it")
        if self.method.name == "senm" and not self.data.mix.get("paired", 0) > 0:
            raise ValueError("data.mix.paired: SeNM-VAE needs its paired domain (eq. 11); give it a probability > 0")
        return self


__all__ = [
    "DEFAULT_METHOD",
    "default_method",
    "MethodConfig",
    "ARMS",
    "DEFAULT_ARMS",
    "SR_METHODS",
    "with_method_train_defaults",
    "Downstream",
    "LPIPSFiles",
    "PipelineSection",
    "NAME_PATTERN",
    "check_name",
    "RunConfig",
]
