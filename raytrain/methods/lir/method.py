"""LIR on the one training loop.

Per step (official order): ``repr_steps`` updates of D_R, one of D_X + D_Y, one of the encoders + generators with
every discriminator frozen. Nets work in [-1, 1] (tanh outputs, as the official code); the loop's [0, 1] images are
mapped in and out here.

Gradients across Ray Train workers are averaged by :meth:`Method.update` (``grad_sync``), not by DDP: LIR calls its
encoders twice per step and freezes discriminators in the generator step, which DDP's once-per-backward hooks reject.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from raytrain.errors import ConfigError, RaytrainError
from raytrain.losses.adversarial import bce_target, lsgan_d, lsgan_target
from raytrain.losses.consistency import BackgroundConsistency, SemanticConsistency
from raytrain.losses.kl import gaussian_kl, mu_squared
from raytrain.methods.base import Method, StepOutput, make_scheduler
from raytrain.nn.backbones import VGG19Features
from raytrain.nn.blocks import (
    ContentEncoder,
    Decoder,
    MultiScaleDiscriminator,
    NoiseEncoder,
    RepresentationDiscriminator,
)
from raytrain.nn.ops import pad_to_multiple

GENERATORS = ("enc_noisy", "enc_clean", "enc_noise", "gen_noisy", "gen_clean")


def build_nets(m, channels: int, inference: bool) -> dict[str, nn.Module]:
    """E_X, E_Y, E^N_X, G_X, G_Y (+ D_X, D_Y, D_R for training), as configured."""
    nets: dict[str, nn.Module] = {"enc_noisy": ContentEncoder(channels, m.width, m.n_down, m.n_res, m.norm)}
    latent = nets["enc_noisy"].out_dim
    nets["gen_clean"] = Decoder(latent, channels, m.n_down, m.n_res, m.norm)
    if inference:
        return nets
    nets["enc_clean"] = ContentEncoder(channels, m.width, m.n_down, m.n_res, m.norm)
    noise_out = m.noise_dim * (2 if m.kl == "gaussian" else 1)
    if m.noise_encoder:
        nets["enc_noise"] = NoiseEncoder(channels, m.width, m.n_down, noise_out, m.norm)
    nets["gen_noisy"] = Decoder(latent + (m.noise_dim if m.noise_encoder else 0), channels, m.n_down, m.n_res, m.norm)
    nets["disc_noisy"] = MultiScaleDiscriminator(channels, m.disc_width, m.disc_layers, m.disc_scales, m.disc_growth)
    nets["disc_clean"] = MultiScaleDiscriminator(channels, m.disc_width, m.disc_layers, m.disc_scales, m.disc_growth)
    if m.repr_disc:
        nets["disc_repr"] = RepresentationDiscriminator(latent, m.repr_widths)
    return nets


def semantic_features(m, seed: int = 0) -> nn.Module:
    if m.scm_backbone == "random":  # the same random VGG on every rank (and in every run of a seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return VGG19Features(m.scm_layer)
    vgg = VGG19Features(m.scm_layer)
    path = Path(m.scm_weights)
    if not path.is_file():
        raise ConfigError(f"method.scm_weights: {path} not found; put a torchvision VGG-19 state dict there")
    try:
        return vgg.load_torchvision(path)
    except RaytrainError as exc:
        raise ConfigError(f"method.scm_weights: {exc}") from None


class LIR(Method):
    name = "lir"
    domains = ("target", "source")  # x: noisy-only target domain, y: clean-only source domain
    draw = "all"
    inference_nets = ("enc_noisy", "gen_clean")
    grad_sync = True

    def __init__(self, cfg, device: torch.device, prepare: Callable | None = None, inference: bool = False):
        super().__init__(cfg, device, prepare)
        m = self.m = cfg.method
        self.stride = 2**m.n_down
        for k, net in build_nets(m, self.channels, inference).items():
            self.nets[k] = self.replicate(net)
        if inference:
            return
        self.bcm = BackgroundConsistency(m.bcm_reading, m.bcm_weights)
        scm = semantic_features(m, cfg.seed).to(device) if m.scm else None
        self.scm = SemanticConsistency(scm, m.scm_instance_norm) if scm is not None else None
        tc = cfg.train
        adam = dict(betas=m.betas, weight_decay=tc.weight_decay)
        gen_params = [p for k in GENERATORS if k in self.nets for p in self.nets[k].parameters()]
        self.optimizers["gen"] = torch.optim.Adam(gen_params, lr=tc.lr, **adam)
        disc = [*self.nets["disc_noisy"].parameters(), *self.nets["disc_clean"].parameters()]
        self.optimizers["disc"] = torch.optim.Adam(disc, lr=tc.lr, **adam)
        if m.repr_disc:
            self.optimizers["disc_repr"] = torch.optim.Adam(
                self.nets["disc_repr"].parameters(), lr=tc.lr * m.repr_lr_factor, **adam
            )
        self.schedulers = {k: make_scheduler(opt, tc) for k, opt in self.optimizers.items()}

    # ------------------------------------------------------------------------------------------------ pieces
    def encode_noise(self, x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """z^N_X and its KL; (None, 0) without the noise encoder (ablation a). gaussian: a sample of N(mu, var) and
        KL(N(mu, var) || N(0, 1)); mu2: the code itself and mean(mu^2) (the unit noise is added where codes are
        decoded, :meth:`translate`)."""
        if "enc_noise" not in self.nets:
            return None, x.new_zeros(())
        h = self.nets["enc_noise"](x)
        if self.m.kl == "mu2":
            return h, mu_squared(h)
        mu, logvar = h.chunk(2, dim=1)
        logvar = logvar.clamp(-20, 10)
        return mu + torch.randn_like(mu) * (0.5 * logvar).exp(), gaussian_kl(mu, logvar)

    def gen_noisy(self, z: torch.Tensor, zn: torch.Tensor | None, eps: torch.Tensor | None = None) -> torch.Tensor:
        code = z if zn is None else torch.cat([z, zn], 1)
        return self.nets["gen_noisy"](code if eps is None else code + eps)

    def code_noise(self, like: torch.Tensor) -> torch.Tensor | None:
        """``kl: mu2`` (official): the unit Gaussian noise added to a code before it is decoded; None otherwise."""
        return torch.randn_like(like) if self.m.kl == "mu2" else None

    def translate(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Forward cross translation (eqs. 3-4) plus the codes the losses need. With ``kl: mu2`` (the official
        trainer) every decoded code gets unit noise: ``eps_x`` on G_X's [z, z^N] (shared by rec_x, y2x and cc_x),
        ``eps_y`` on G_Y's z (shared by rec_y, x2y and cc_y), and the KL is mean(mu^2) of the content codes too."""
        n = self.nets
        z_x, z_y = n["enc_noisy"](x), n["enc_clean"](y)
        zn, kl = self.encode_noise(x)
        if self.m.kl == "mu2":
            kl = kl + mu_squared(z_x) + mu_squared(z_y)
        eps_x = self.code_noise(z_y if zn is None else torch.cat([z_y, zn], 1))
        eps_y = self.code_noise(z_x)
        x2y = n["gen_clean"](z_x if eps_y is None else z_x + eps_y)
        return {"z_x": z_x, "z_y": z_y, "zn": zn, "kl": kl, "eps_x": eps_x, "eps_y": eps_y,
                "x2y": x2y, "y2x": self.gen_noisy(z_y, zn, eps_x)}  # fmt: skip

    # ------------------------------------------------------------------------------------------------ steps
    def step_repr_disc(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, bool]:
        with torch.no_grad():
            z_x, z_y = self.nets["enc_noisy"](x), self.nets["enc_clean"](y)
        d = self.nets["disc_repr"]
        loss = self.repr_d_loss(z_x, z_y)
        ok = self.update(loss, self.optimizers["disc_repr"], d.parameters(), clip=self.m.repr_clip)
        return float(loss.detach()), ok

    def repr_d_loss(self, z_x: torch.Tensor, z_y: torch.Tensor) -> torch.Tensor:
        """D_R's loss (eq. 9): the clean code real (1), the noisy one fake (0)."""
        d = self.nets["disc_repr"]
        if self.m.repr_gan == "lsgan":
            return lsgan_d(d(z_y), d(z_x))
        return bce_target(d(z_y), 1.0) + bce_target(d(z_x), 0.0)

    def step_domain_disc(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, bool]:
        """D_X and D_Y (eqs. 12-13); with ``repr_updates: official`` D_R's loss joins and its optimiser steps too
        (its gradient norm clipped at ``repr_clip``), as the official ``dis_update`` does."""
        with torch.no_grad():
            t = self.translate(x, y)
        dx, dy = self.nets["disc_noisy"], self.nets["disc_clean"]
        loss = lsgan_d(dx(x), dx(t["y2x"])) + lsgan_d(dy(y), dy(t["x2y"]))
        params, opts, part = [*dx.parameters(), *dy.parameters()], [self.optimizers["disc"]], None
        if self.m.repr_disc and self.m.repr_updates == "official":
            dr = self.nets["disc_repr"]
            loss = loss + self.repr_d_loss(t["z_x"], t["z_y"])
            params += list(dr.parameters())
            opts.append(self.optimizers["disc_repr"])
            part = (list(dr.parameters()), self.m.repr_clip)
        ok = self.update(self.m.lambda_adv * loss, opts, params, clip_part=part)
        return float(loss.detach()), ok

    def generator_losses(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every term of eq. 14 for the encoder/generator step (unweighted)."""
        n, m = self.nets, self.m
        t = self.translate(x, y)
        eps_x, eps_y = t["eps_x"], t["eps_y"]
        g_clean = lambda z: n["gen_clean"](z if eps_y is None else z + eps_y)  # noqa: E731
        rec_x = self.gen_noisy(t["z_x"], t["zn"], eps_x)
        rec_y = g_clean(t["z_y"])
        zn_cc, kl_cc = self.encode_noise(t["y2x"])  # backward cross reconstruction (eqs. 5-6)
        z_cc_y, z_cc_x = n["enc_clean"](t["x2y"]), n["enc_noisy"](t["y2x"])
        cc_x = self.gen_noisy(z_cc_y, zn_cc, eps_x)
        cc_y = g_clean(z_cc_x)
        kl = t["kl"]
        if m.kl == "mu2":  # official: the three codes of the cycle too (recon_kl_cyc_w = recon_kl_w)
            kl = kl + kl_cc + mu_squared(z_cc_y) + mu_squared(z_cc_x)
        losses = {
            "rec": F.l1_loss(rec_x, x) + F.l1_loss(rec_y, y),
            "cc": F.l1_loss(cc_x, x) + F.l1_loss(cc_y, y),
            "adv": lsgan_target(n["disc_clean"](t["x2y"]), 1.0) + lsgan_target(n["disc_noisy"](t["y2x"]), 1.0),
            "kl": kl,
        }
        if m.repr_disc:  # encoders make D_R unsure (target 1/2) for both domains (eq. 9)
            confuse = lsgan_target if m.repr_gan == "lsgan" else bce_target
            losses["repr"] = confuse(n["disc_repr"](t["z_x"]), 0.5) + confuse(n["disc_repr"](t["z_y"]), 0.5)
        if m.bcm:
            losses["bc"] = self.bcm(x, t["x2y"]) + self.bcm(y, t["y2x"])
        if self.scm is not None:
            to01 = lambda v: (v + 1) / 2  # noqa: E731 - VGG expects [0, 1]
            losses["sc"] = self.scm(to01(x), to01(t["x2y"])) + self.scm(to01(y), to01(t["y2x"]))
        return losses

    def weighted(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        m = self.m
        w = {"repr": m.lambda_R, "adv": m.lambda_adv, "cc": m.lambda_CC, "rec": m.lambda_rec, "bc": m.lambda_bc,
             "sc": m.lambda_sc, "kl": m.lambda_KL}  # fmt: skip
        return sum(w[k] * v for k, v in losses.items())

    def step_generators(self, x: torch.Tensor, y: torch.Tensor) -> tuple[dict[str, float], bool]:
        """Encoders + generators on eq. 14 with D_X, D_Y frozen; D_R frozen too, unless ``repr_updates: official``,
        where the official ``gen_update`` also steps D_R's optimiser on the 1/2-target term."""
        official = self.m.repr_disc and self.m.repr_updates == "official"
        discs = [self.nets[k] for k in ("disc_noisy", "disc_clean", "disc_repr")
                 if k in self.nets and not (k == "disc_repr" and official)]  # fmt: skip
        for d in discs:  # frozen: no discriminator gradient in the generator step
            d.requires_grad_(False)
        losses = self.generator_losses(x, y)
        total = self.weighted(losses)
        params = [p for k in GENERATORS if k in self.nets for p in self.nets[k].parameters()]
        opts = [self.optimizers["gen"]]
        if official:
            params += list(self.nets["disc_repr"].parameters())
            opts.append(self.optimizers["disc_repr"])
        ok = self.update(total, opts, params)
        for d in discs:
            d.requires_grad_(True)
        return {f"g_{k}": float(v.detach()) for k, v in losses.items()} | {"g_total": float(total.detach())}, ok

    def train_step(self, batches: dict[str, dict[str, torch.Tensor]], step: int) -> StepOutput:
        x = batches["target"]["noisy"] * 2 - 1
        y = batches["source"]["clean"] * 2 - 1
        out: dict[str, float] = {}
        ok = True
        if self.m.repr_disc:
            for _ in range(self.m.repr_steps):
                out["d_repr"], good = self.step_repr_disc(x, y)
                ok &= good
        out["d_domain"], good = self.step_domain_disc(x, y)
        ok &= good
        g, good = self.step_generators(x, y)
        return StepOutput(out | g, skipped=not (ok and good))

    @torch.no_grad()
    def preview(self, clean: torch.Tensor, noisy: torch.Tensor) -> list[torch.Tensor]:
        """noisy | restored | clean | degraded clean (G_X(E_Y(y) (+) E^N_X(x)), the learned noise on the clean)."""
        h, w = noisy.shape[-2:]
        h, w = h - h % self.stride, w - w % self.stride
        x, y = noisy[..., :h, :w] * 2 - 1, clean[..., :h, :w] * 2 - 1
        zn, _ = self.encode_noise(x)
        degraded = (self.gen_noisy(self.nets["enc_clean"](y), zn) + 1) / 2
        return [noisy[..., :h, :w], self.restore(noisy)[..., :h, :w], clean[..., :h, :w], degraded]

    @torch.no_grad()
    def restore(self, noisy: torch.Tensor) -> torch.Tensor:
        """G_Y(E_X(x)) with reflect padding to a multiple of the encoder stride, cropped back."""
        h, w = noisy.shape[-2:]
        x = pad_to_multiple(noisy * 2 - 1, self.stride)
        out = self.nets["gen_clean"](self.nets["enc_noisy"](x))
        return ((out + 1) / 2)[..., :h, :w]
