"""Super-resolution training (ESRGAN's generator objective) on (HR, LR) patch pairs: real pairs, pairs a noise model
synthesised from bicubic-downscaled HR images (SeNM-VAE Sec. 4.6), or plain bicubic pairs.

One step: the generator's loss ``pixel_weight * |G(lr) - hr|_1 + perceptual_weight * P(G(lr), hr) + gan_weight *
L_G^Ra`` with the discriminator frozen; then, with ``gan_weight`` > 0, the discriminator's relativistic loss on
``hr`` (real) against the detached ``G(lr)`` (fake). Gradients are averaged over ranks by :meth:`Method.update`
(``grad_sync``): the discriminator sees two batches per step, which DDP's hooks do not fit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from raytrain.data.resize import bicubic_up
from raytrain.errors import ConfigError, RaytrainError
from raytrain.losses.adversarial import ragan_d, ragan_g
from raytrain.methods.base import Method, StepOutput, load_checked, make_scheduler
from raytrain.methods.perceptual_options import build_perceptual_loss
from raytrain.methods.sr.nets import RRDBNet
from raytrain.nn.blocks import PatchDiscriminator

if TYPE_CHECKING:
    from raytrain.config import RunConfig


class RRDBSR(Method):
    name = "rrdb"
    domains = ("paired",)
    inference_nets = ("sr",)
    grad_sync = True
    val_keys = ("psnr", "ssim", "psnr_noisy", "ssim_noisy")  # *_noisy: the bicubic-upscaled LR input

    def __init__(self, cfg: RunConfig, device: torch.device, prepare: Callable[[nn.Module], nn.Module] | None = None,
                 inference: bool = False):  # fmt: skip
        super().__init__(cfg, device, prepare)
        m = self.m = cfg.method
        self.scale = cfg.data.scale
        try:
            net = RRDBNet(self.channels, self.scale, m.width, m.blocks, m.growth, m.residual)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self.nets["sr"] = self.replicate(net)
        if inference:
            return
        if m.init_from:
            self._init_from(m.init_from)
        tc = cfg.train
        self.optimizers["sr"] = torch.optim.Adam(self.nets["sr"].parameters(), lr=tc.lr, weight_decay=tc.weight_decay,
                                                 betas=(0.9, 0.99))  # fmt: skip
        if m.gan_weight > 0:
            self.nets["disc"] = self.replicate(PatchDiscriminator(self.channels, m.disc_width, m.disc_layers))
            self.optimizers["disc"] = torch.optim.Adam(self.nets["disc"].parameters(), lr=tc.lr, betas=(0.9, 0.99))
        self.schedulers = {k: make_scheduler(opt, tc) for k, opt in self.optimizers.items()}
        self.perceptual = build_perceptual_loss(m, cfg.seed, device)
        self._pixel = F.l1_loss if m.pixel_loss == "l1" else F.mse_loss

    def _init_from(self, path: str) -> None:
        """The generator's weights from another rrdb run (ESRGAN's GAN stage starts from its PSNR-oriented net)."""
        from raytrain.train.checkpoint import load_inference

        try:
            payload = load_inference(path)
        except (RaytrainError, OSError, KeyError) as exc:
            raise ConfigError(f"method.init_from: {exc}") from None
        if payload.get("method") != "rrdb" or "sr" not in payload.get("nets", {}):
            raise ConfigError(f"method.init_from: {path} is a {payload.get('method')} checkpoint, not an rrdb one")
        try:
            load_checked(self.nets["sr"], payload["nets"]["sr"], "net sr")
        except RaytrainError as exc:
            raise ConfigError(f"method.init_from: {path}: {exc}") from None

    def terms(self, lr: torch.Tensor, hr: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The generator's unweighted loss terms for one batch, and its output ``G(lr)``."""
        m, out = self.m, self.nets["sr"](lr)
        terms = {"pixel": self._pixel(out, hr)} if m.pixel_weight > 0 else {}
        if self.perceptual is not None:
            terms["perceptual"] = self.perceptual(out.clamp(0, 1), hr).mean()
        if m.gan_weight > 0:
            disc = self.nets["disc"]
            terms["gan"] = ragan_g(disc(hr), disc(out))
        return terms, out

    def weights(self) -> dict[str, float]:
        m = self.m
        return {"pixel": m.pixel_weight, "perceptual": m.perceptual_weight, "gan": m.gan_weight}

    def train_step(self, batches: dict[str, dict[str, torch.Tensor]], step: int) -> StepOutput:
        pair = batches["paired"]
        lr, hr = pair["noisy"], pair["clean"]
        disc = self.nets.get("disc")
        if disc is not None:
            disc.requires_grad_(False)  # frozen in the generator's step
        terms, out = self.terms(lr, hr)
        if disc is not None:
            disc.requires_grad_(True)
        w = self.weights()
        loss = sum(w[k] * v for k, v in terms.items())
        report = {k: float(v.detach()) for k, v in terms.items()} | {"loss": float(loss.detach())}
        ok = self.update(loss, self.optimizers["sr"], self.nets["sr"].parameters())
        if disc is not None:
            d_loss = ragan_d(disc(hr), disc(out.detach()))
            ok &= self.update(d_loss, self.optimizers["disc"], disc.parameters())
            report["d_loss"] = float(d_loss.detach())
        return StepOutput(report, skipped=not ok)

    @torch.no_grad()
    def restore(self, noisy: torch.Tensor) -> torch.Tensor:
        """The LR batch super-resolved: (N, C, H, W) -> (N, C, H * scale, W * scale)."""
        return self.nets["sr"](noisy)

    @torch.no_grad()
    def preview(self, clean: torch.Tensor, noisy: torch.Tensor) -> list[torch.Tensor]:
        """LR input (bicubic-upscaled to the HR size) | SR output | HR."""
        return [bicubic_up(noisy, clean.shape[-2:]), self.restore(noisy), clean]
