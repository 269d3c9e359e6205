"""SeNM-VAE on the one training loop: eq. 11's per-domain losses, mixture inference, level conditioning, the
PatchGAN on noisy reconstructions, the official guards.

Each domain's batch touches only its own terms (eq. 11):

============  ==========================================================================================
paired        -log p(x|z), -log p(y|z,z_n), KL(q(z_n|y,z) || p(z_n|z)), lambda KL(q(z|y) || q(z|x)), level L1
source        -log p(x|z)                             (z ~ q(z|x))
target        -log p(y|z,z_n), KL(q(z_n|y,z) || p(z_n|z))  (z ~ q(z|y), level predicted by the level net)
============  ==========================================================================================

With ``domain_sampling: batch`` (the paper) the loop draws one domain per step with ``data.mix`` probabilities (the
same on every rank); with ``sample`` (the official code) every sample of a batch has its own domain: each term is the
mean over the samples it applies to, as the official masked means are.

Gradients are averaged over Ray Train workers by :meth:`Method.update` (``grad_sync``): a step touches only the nets
of its domain and the discriminator is frozen in the VAE step, which DDP's hooks reject.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from raytrain.errors import ConfigError
from raytrain.evaluate import noise_rows
from raytrain.losses.adversarial import lsgan_d, lsgan_target, ragan_d, ragan_g
from raytrain.losses.perceptual import build_perceptual
from raytrain.methods.base import Method, StepOutput, make_scheduler
from raytrain.methods.senm.levels import LevelStats
from raytrain.methods.senm.nets import LevelNet, SeNMVAE
from raytrain.nn.blocks import PatchDiscriminator


class SeNM(Method):
    name = "senm"
    domains = ("paired", "source", "target")
    inference_nets = ("vae", "levels")
    grad_sync = True
    restores = False
    val_keys = ("kld", "kld_noisy", "noise_std", "noise_std_real", "rho", "rho_real")
    headline = ("kld", "noise KLD {:.4f}", "min")

    @classmethod
    def domains_for(cls, cfg) -> tuple[str, ...]:
        # Table 6 ablation: without -log p(x|z) the source domain has no term left
        return cls.domains if cfg.method.rec_x else ("paired", "target")

    def __init__(self, cfg, device: torch.device, prepare: Callable | None = None, inference: bool = False):
        super().__init__(cfg, device, prepare)
        m = self.m = cfg.method
        self.domains = self.domains_for(cfg)
        self.draw = "one" if m.domain_sampling == "batch" else "all"
        self.nets["vae"] = self.replicate(SeNMVAE(self.channels, m))
        self.nets["levels"] = self.replicate(LevelStats(m.level_reservoir))
        if inference:
            return
        self.nets["level_net"] = self.replicate(LevelNet(self.channels, m.level_net_width))
        self.nets["disc"] = self.replicate(PatchDiscriminator(self.channels, m.disc_width, m.disc_layers))
        self.perceptual = self._perceptual(m)
        tc = cfg.train
        vae_params = [*self.nets["vae"].parameters(), *self.nets["level_net"].parameters()]
        self.optimizers["vae"] = torch.optim.Adam(vae_params, lr=tc.lr, weight_decay=tc.weight_decay)
        self.optimizers["disc"] = torch.optim.Adam(self.nets["disc"].parameters(), lr=tc.lr)
        self.schedulers = {k: make_scheduler(opt, tc) for k, opt in self.optimizers.items()}

    def _perceptual(self, m) -> nn.Module | None:
        if m.perceptual == "none" or m.perceptual_weight == 0:
            return None
        try:
            net = build_perceptual(m.perceptual, m.perceptual_weights, m.lpips_weights,
                                   m.perceptual_backbone == "random")  # fmt: skip
        except FileNotFoundError as exc:
            key = "lpips_weights" if str(exc) == str(m.lpips_weights) else "perceptual_weights"
            raise ConfigError(f"method.{key}: {exc} not found; put the weight file there (no downloads)") from None
        except ValueError as exc:
            raise ConfigError(f"method.perceptual_weights: {exc}") from None
        return net.to(self.device)

    # ------------------------------------------------------------------------------------------------ losses
    def domain_terms(self, domain: str, x: torch.Tensor | None, y: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Per-sample (N,) unweighted terms of eq. 11 for one domain's batch, plus ``_rec_y`` for the GAN step."""
        m, vae = self.m, self.nets["vae"]
        acts_x = vae.enc_x(x) if x is not None else None
        acts_y = vae.enc_y(y) if y is not None else None
        terms: dict[str, torch.Tensor] = {}
        level = None
        if y is not None:
            pred = self.nets["level_net"](y)
            if domain == "paired":
                level = (y - x).std(dim=(1, 2, 3), keepdim=True)  # the true level of a real pair
                terms["level"] = (level - pred).abs().flatten()
            else:
                level = pred.detach() if m.level_detach else pred
            self.nets["levels"].add(level.detach().flatten())
        n = (x if x is not None else y).shape[0]
        mixed = acts_x is not None and acts_y is not None
        kl_z = None
        if x is not None and m.rec_x:
            out_x, kl_z, _ = vae.top_down(acts_x, acts_y, pick_x=self._pick(n, x) if mixed else None)
            terms["rec_x"] = (out_x - x).pow(2).mean(dim=(1, 2, 3))
        if y is not None:
            pick = self._pick(n, y) if mixed else None
            out_y, kl_zy, kl_n = vae.top_down(acts_x, acts_y, vae.enc_n(y), level, pick_x=pick, noise="posterior")
            terms["rec_y"] = (out_y - y).pow(2).mean(dim=(1, 2, 3))
            terms["kl_n"] = kl_n
            kl_z = kl_zy if kl_z is None else kl_z + kl_zy
            if self.perceptual is not None:
                terms["perc"] = self._perc(out_y, y)
            terms["_rec_y"] = out_y
        if mixed:
            terms["kl_z"] = kl_z
        return terms

    def _pick(self, n: int, ref: torch.Tensor) -> torch.Tensor:
        """Which samples draw z from q(z|x) (probability p1) rather than q(z|y): the mixture of eq. 5."""
        return (torch.rand(n, 1, 1, 1, device=ref.device) < self.m.mixture_p1).to(ref.dtype)

    def _perc(self, out: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        d = self.perceptual(out.clamp(0, 1), ref.clamp(0, 1))
        return d if d.ndim == 1 else d.expand(out.shape[0])

    def weights(self, step: int) -> dict[str, float]:
        m = self.m
        anneal = min(step / m.kl_anneal_steps, 1.0) if m.kl_anneal_steps else 1.0
        w_n = m.kl_noise_weight * anneal
        w_z = m.kl_z_weight * (w_n if m.kl_z_scale == "official" else 1.0)
        return {"rec_x": 1.0, "rec_y": 1.0, "kl_n": w_n, "kl_z": w_z, "level": 1.0, "perc": m.perceptual_weight,
                "adv": m.adv_weight}  # fmt: skip

    # ------------------------------------------------------------------------------------------------- steps
    def train_step(self, batches: dict[str, dict[str, torch.Tensor]], step: int) -> StepOutput:
        parts = self._split(batches, step)
        disc = self.nets["disc"]
        disc.requires_grad_(False)  # frozen in the VAE step
        per_domain = [self.domain_terms(d, b.get("clean"), b.get("noisy")) for d, b in parts.items()]
        terms = {k: torch.cat([t[k] for t in per_domain if k in t]).mean()
                 for k in {k for t in per_domain for k in t if not k.startswith("_")}}  # fmt: skip
        fake = [t["_rec_y"] for t in per_domain if "_rec_y" in t]
        real = [b["noisy"] for d, b in parts.items() if d != "source"]
        if fake and self.m.adv_weight > 0:
            terms["adv"] = self._gan_g(disc(torch.cat(real)), disc(torch.cat(fake)))
        disc.requires_grad_(True)
        if not terms:
            return StepOutput({})
        w = self.weights(step)
        weighted = self._drop_nonfinite({k: w[k] * v for k, v in terms.items()})
        ok = weighted is not None
        if ok:
            params = [*self.nets["vae"].parameters(), *self.nets["level_net"].parameters()]
            ok = self.update(sum(weighted.values()), self.optimizers["vae"], params, self.m.grad_clip, self.m.grad_skip)
        out = {k: float(v.detach()) for k, v in terms.items()}
        if fake and self.m.adv_weight > 0:
            d_loss = self._gan_d(disc(torch.cat(real)), disc(torch.cat(fake).detach()))
            ok &= self.update(d_loss, self.optimizers["disc"], disc.parameters())
            out["d_loss"] = float(d_loss.detach())
        out["kl_weight"] = w["kl_n"]
        return StepOutput(out, skipped=not ok)

    def _split(self, batches: dict, step: int) -> dict[str, dict[str, torch.Tensor]]:
        """The sub-batch of every domain this step: one whole batch (``batch``), or per-sample domains drawn with
        ``data.mix`` from an RNG seeded by the step, identical on every rank (``sample``)."""
        if self.draw == "one":
            return batches
        n = self.cfg.train.batch_size
        p = np.array([self.cfg.data.mix.get(d, 0.0) for d in self.domains], dtype=np.float64)
        counts = np.random.default_rng([self.cfg.seed, 5151, step]).multinomial(n, p / p.sum())
        return {d: {k: v[:c] for k, v in batches[d].items()} for d, c in zip(self.domains, counts, strict=True) if c}

    def _drop_nonfinite(self, weighted: dict[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
        """``nan_policy``: ``drop_term`` leaves NaN/Inf terms out of the sum (official), ``skip_step`` skips the update.
        The decision is all-reduced so every rank drops the same terms (their gradient sets must match)."""
        keys = sorted(weighted)
        ok = torch.tensor([float(torch.isfinite(weighted[k]).all()) for k in keys], device=self.device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(ok, op=dist.ReduceOp.MIN)
        if self.m.nan_policy == "skip_step" and not bool(ok.all()):
            return None
        kept = {k: weighted[k] for k, good in zip(keys, ok.tolist(), strict=True) if good}
        return kept or None

    def _gan_g(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return ragan_g(real, fake) if self.m.gan == "ragan" else lsgan_target(fake, 1.0)

    def _gan_d(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return ragan_d(real, fake) if self.m.gan == "ragan" else lsgan_d(real, fake)

    # ------------------------------------------------------------------------------------------- synthesis
    @torch.no_grad()
    def synthesize(self, clean: torch.Tensor, level: torch.Tensor | None = None, temperature: float = 1.0):
        """Noisy images for a batch of clean ones (N, C, H, W) in [0, 1], any size; ``level`` (N, 1, 1, 1) on the
        [0, 1] scale, default: drawn from the levels seen in training. ``temperature`` scales the std of z_n's prior
        samples (the official code scales the whole sample; the two agree at 1)."""
        vae = self.nets["vae"]
        if level is None:
            level = self.nets["levels"].sample(clean.shape[0]).to(clean.device).view(-1, 1, 1, 1)
        h, w = clean.shape[-2:]
        ph, pw = (-h) % vae.stride, (-w) % vae.stride
        x = F.pad(clean, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "replicate")
        return vae.synthesize(x, level, temperature)[..., :h, :w]

    @torch.no_grad()
    def evaluate(self, pairs: list, device) -> list[dict[str, float]]:
        """Noise quality on real (noisy, clean) pairs: synthesise at each pair's true level, compare the noise."""
        return noise_rows(lambda c, lv: self.synthesize(c, lv), pairs, device)

    @torch.no_grad()
    def preview(self, noisy: torch.Tensor, clean: torch.Tensor) -> list[torch.Tensor]:
        """clean | real noisy | synthetic noisy (at the real level) | the VAE's clean estimate from the real noisy."""
        level = (noisy - clean).std().view(1, 1, 1, 1)
        h, w = clean.shape[-2:]
        s = self.nets["vae"].stride
        crop = (..., slice(0, h - h % s), slice(0, w - w % s))
        return [clean[crop], noisy[crop], self.synthesize(clean[crop], level), self.nets["vae"].denoise(noisy[crop])]
