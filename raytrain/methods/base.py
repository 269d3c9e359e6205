"""The contract between a method and the one training loop (as BasicSR's ``feed_data``/``optimize_parameters``).

A method owns its nets, optimisers and schedulers; the loop owns data, steps, validation, checkpoints and reporting.
Nothing here imports Ray or MLflow: DDP wrapping arrives as the ``prepare`` callable.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from raytrain.errors import RaytrainError
from raytrain.evaluate import evaluate_pairs
from raytrain.methods.amp import Precision
from raytrain.methods.collective import all_finite, average_gradients, average_in_place, unwrap

if TYPE_CHECKING:
    from raytrain.config import RunConfig, TrainConfig


@dataclass
class StepOutput:
    """What one training step produced: named scalar losses and whether every update was applied."""

    losses: dict[str, float] = field(default_factory=dict)
    skipped: bool = False  # True when a loss was NaN/Inf (or a grad norm over the skip threshold) and nothing moved


def make_scheduler(opt: torch.optim.Optimizer, train: TrainConfig) -> torch.optim.lr_scheduler.LRScheduler:
    s = train.schedule
    if s.kind == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=s.step_size, gamma=s.gamma)
    if s.kind == "exponential":
        return torch.optim.lr_scheduler.ExponentialLR(opt, gamma=s.gamma)
    if s.kind == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(s.milestones), gamma=s.gamma)
    if s.kind == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=train.steps)
    return torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0, total_iters=0)


def mix_probabilities(mix: dict[str, float], domains: Sequence[str]) -> np.ndarray:
    """``data.mix`` as probabilities over ``domains`` (in that order; a domain the mix does not name weighs 0): what
    both domain draws use, a whole batch per step (``draw.pick_domains``) or per sample (SeNM-VAE's
    ``domain_sampling: sample``)."""
    p = np.array([mix.get(d, 0.0) for d in domains], dtype=np.float64)
    return p / p.sum()


def load_checked(obj, state: dict, what: str) -> None:
    """``obj.load_state_dict(state)``; weights that do not fit the net the config builds (another width, depth or
    method) are one :class:`RaytrainError` line naming ``what`` and the first mismatch, not a RuntimeError dump."""
    try:
        obj.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError, TypeError) as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        first = next((ln for ln in lines if ln.startswith(("size mismatch", "Missing", "Unexpected"))), None)
        first = first or (lines[0] if lines else exc.__class__.__name__)
        raise RaytrainError(
            f"{what}: the stored weights do not fit the net its config builds ({first[:200]})"
        ) from None


class Method:
    """Base class. Subclasses fill ``self.nets``, ``self.optimizers``, ``self.schedulers`` and implement
    :meth:`train_step` and :meth:`restore`."""

    name: str = "method"
    #: domains the method draws a batch from at every step (``paired``, ``source``, ``target``)
    domains: tuple[str, ...] = ("paired",)
    #: domains a run may go without when its split leaves them empty (the launcher sets their ``data.mix`` to 0)
    optional_domains: tuple[str, ...] = ()
    #: "all": a batch of every domain each step (LIR: source + target); "one": one domain per step, drawn with
    #: ``data.mix`` probabilities (SeNM-VAE); a method can instead mix domains per sample (:meth:`draw_counts`)
    draw: str = "all"
    #: nets kept for inference (``raytrain denoise``, exported weights)
    inference_nets: tuple[str, ...] = ()
    #: True: nets are not DDP-wrapped; :meth:`update` averages gradients over ranks itself (GAN steps that reuse
    #: a net twice per backward or freeze some nets do not fit DDP's hooks)
    grad_sync: bool = False
    #: whether :meth:`restore` exists (``raytrain denoise`` / ``eval``); a noise model (SeNM-VAE) synthesises instead
    restores: bool = True
    #: per-image validation values :meth:`evaluate` returns; the loop reports their means as ``val_<key>``
    val_keys: tuple[str, ...] = ("psnr", "ssim", "psnr_noisy", "ssim_noisy")
    #: the validation number shown on the progress bar and tracked as ``val_best_<key>``: (key, label, better)
    headline: tuple[str, str, str] = ("psnr", "PSNR {:.2f} dB", "max")

    @classmethod
    def domains_for(cls, cfg: RunConfig) -> tuple[str, ...]:
        """The domains a run of ``cfg`` draws from (the driver builds one Ray Data stream for each)."""
        return cls.domains

    def __init__(self, cfg: RunConfig, device: torch.device, prepare: Callable[[nn.Module], nn.Module] | None):
        self.cfg = cfg
        self.device = device
        self.prepare = prepare or (lambda m: m.to(device))
        self.channels = 1 if cfg.data.color == "gray" else 3
        self.nets: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler] = {}
        # train.ema: an exponential moving average of the inference nets' parameters (None until the first step)
        self._ema: dict[str, dict[str, torch.Tensor]] | None = None
        self.precision = Precision(cfg.train.precision, device)  # train.precision: autocast, fp16's GradScaler

    # ------------------------------------------------------------------------------------------- to implement
    def train_step(self, batches: dict[str, dict[str, torch.Tensor]], step: int) -> StepOutput:
        raise NotImplementedError

    @torch.no_grad()
    def restore(self, noisy: torch.Tensor) -> torch.Tensor:
        """Restore a batch of noisy images (N, C, H, W) in [0, 1]; any H, W."""
        raise NotImplementedError

    @torch.no_grad()
    def evaluate(self, pairs: list, device: torch.device | str) -> list[dict[str, float]]:
        """One row of :attr:`val_keys` per (clean, noisy) HWC validation pair; restorers score PSNR/SSIM."""
        return evaluate_pairs(self.restore, pairs, device)

    def draw_counts(self, step: int) -> dict[str, int] | None:
        """How many patches of each domain step ``step`` uses, when the method mixes domains per sample (the loop then
        draws exactly those, keeping the rest of each batch for later steps); None (default): whole batches of the
        domains :attr:`draw` names. Must be the same on every rank."""
        return None

    def before_validation(self) -> None:
        """Called on every rank before :meth:`evaluate` at each validation (a collective is allowed); nothing by
        default."""

    def state_summary(self) -> dict[str, float]:
        """Figures of the method's state reported beside each validation (equal on every rank); none by default."""
        return {}

    @torch.no_grad()
    def preview(self, clean: torch.Tensor, noisy: torch.Tensor) -> list[torch.Tensor]:
        """Columns of the validation image grid (one image each, (1, C, H, W) in [0, 1]): noisy | output | clean."""
        return [noisy, self.restore(noisy), clean]

    # ---------------------------------------------------------------------------------------------- helpers
    @torch.no_grad()
    def sync_buffers(self) -> None:
        """Average every floating-point buffer (BatchNorm running statistics) over the ranks, in one all-reduce: each
        rank normalises its own batches in training, so their running statistics drift apart, and validation on a
        rank or the saved rank-0 model would not be the model of the run. A collective: the loop calls it on every
        rank before each validation and checkpoint; a no-op on one process."""
        bufs = [b for net in self.nets.values() for b in unwrap(net).buffers() if b.is_floating_point()]
        average_in_place(bufs, torch.float64)

    def replicate(self, net: nn.Module) -> nn.Module:
        """Place a net for a ``grad_sync`` method: on this device, with rank 0's initial weights on every rank."""
        net = net.to(self.device)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            for t in net.state_dict().values():
                dist.broadcast(t, src=0)
        return net

    def update(
        self,
        loss: torch.Tensor,
        opt: torch.optim.Optimizer | Sequence[torch.optim.Optimizer],
        params: Iterable[nn.Parameter],
        clip: float | None = None,
        skip: float | None = None,
        clip_part: tuple[Iterable[nn.Parameter], float] | None = None,
    ) -> bool:
        """Backward + step unless the loss is NaN/Inf or the grad norm is over ``skip`` (else ``train.grad_skip``;
        vdvae's guard). Returns whether the update was applied. ``clip`` (else ``train.grad_clip``) clips the norm of
        applied updates; ``clip_part`` = (some of the params, a norm) clips those first, on their own. Several
        optimisers step together from one backward."""
        opts = [opt] if isinstance(opt, torch.optim.Optimizer) else list(opt)
        for o in opts:
            o.zero_grad(set_to_none=True)
        if not all_finite(loss):
            return False
        self.precision.backward(loss)
        params = [p for p in params if p.grad is not None]
        if self.grad_sync:
            average_gradients(params)
        self.precision.unscale(opts)
        if clip_part is not None:
            torch.nn.utils.clip_grad_norm_([p for p in clip_part[0] if p.grad is not None], clip_part[1])
        tc = self.cfg.train
        limit = clip or (tc.grad_clip if tc.grad_clip is not None else math.inf)
        norm = torch.nn.utils.clip_grad_norm_(params, limit)
        skip = skip if skip is not None else tc.grad_skip
        if not torch.isfinite(norm) or (skip is not None and norm > skip):
            for o in opts:
                o.zero_grad(set_to_none=True)
            self.precision.skipped()
            return False
        self.precision.step(opts)
        return True

    def end_step(self) -> None:
        """Advance the LR schedulers once per training step: the lr is a function of the step, whether or not every
        optimiser stepped (a skipped update, or SeNM-VAE's discriminator at ``adv_weight: 0``), so PyTorch's warning
        about a scheduler stepping before its optimiser is expected here and silenced."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)` before")
            for sched in self.schedulers.values():
                sched.step()

    # ------------------------------------------------------------------------------------------------- EMA
    def _live_params(self) -> dict[str, dict[str, nn.Parameter]]:
        return {k: dict(unwrap(self.nets[k]).named_parameters()) for k in self.inference_nets if k in self.nets}

    @torch.no_grad()
    def update_ema(self) -> None:
        """``train.ema`` = d: after each step, ema <- d * ema + (1 - d) * live for every parameter of the inference
        nets (the restoring / generating nets; discriminators are not averaged); the first step copies them."""
        decay = self.cfg.train.ema
        if decay is None:
            return
        live = self._live_params()
        if self._ema is None:
            self._ema = {k: {n: p.detach().clone() for n, p in ps.items()} for k, ps in live.items()}
            return
        for k, ps in live.items():
            for n, p in ps.items():
                self._ema[k][n].lerp_(p.detach(), 1 - decay)

    @contextmanager
    def averaged(self) -> Iterator[None]:
        """The EMA parameters in the inference nets for the duration (validation, export), the live ones put back
        after. Parameters only: buffers (BatchNorm statistics, fitted kernels, the temperature) stay the live nets'."""
        if self._ema is None:
            yield
            return
        live = self._live_params()
        saved = {k: {n: p.detach().clone() for n, p in ps.items()} for k, ps in live.items()}
        with torch.no_grad():
            for k, ps in live.items():
                for n, p in ps.items():
                    p.copy_(self._ema[k][n])
        try:
            yield
        finally:
            with torch.no_grad():
                for k, ps in live.items():
                    for n, p in ps.items():
                        p.copy_(saved[k][n])

    def train(self, mode: bool = True) -> None:
        for net in self.nets.values():
            net.train(mode)

    def lrs(self) -> dict[str, float]:
        return {f"lr_{k}": opt.param_groups[0]["lr"] for k, opt in self.optimizers.items()}

    # ------------------------------------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {
            "nets": {k: unwrap(v).state_dict() for k, v in self.nets.items()},
            "optimizers": {k: v.state_dict() for k, v in self.optimizers.items()},
            "schedulers": {k: v.state_dict() for k, v in self.schedulers.items()},
        } | ({"ema": self._ema} if self._ema is not None else {}) | (
            {"grad_scaler": self.precision.state_dict()} if self.precision.scaling else {})  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        for group in ("nets", "optimizers", "schedulers"):
            mine = getattr(self, group)
            missing = set(mine) - set(state.get(group, {}))
            if missing:
                raise RaytrainError(f"the checkpoint has no {group} {sorted(missing)}")
            for k, obj in mine.items():
                load_checked(unwrap(obj) if group == "nets" else obj, state[group][k], f"{group[:-1]} {k}")
        self.precision.load_state_dict(state.get("grad_scaler", {}))
        self._ema = None  # a checkpoint without one (ema turned on later): it starts from the live weights
        if self.cfg.train.ema is not None and state.get("ema"):
            live = self._live_params()
            if {k: set(v) for k, v in state["ema"].items()} != {k: set(v) for k, v in live.items()}:
                raise RaytrainError("the checkpoint's EMA weights do not match the inference nets of this config")
            self._ema = {k: {n: t.detach().clone().to(live[k][n].device) for n, t in v.items()}
                         for k, v in state["ema"].items()}  # fmt: skip

    def inference_state(self) -> dict:
        """Only the nets needed to restore images (``raytrain denoise``); their EMA parameters when ``train.ema``."""
        with self.averaged():
            return {k: {n: t.detach().clone() for n, t in unwrap(self.nets[k]).state_dict().items()}
                    for k in self.inference_nets}  # fmt: skip
