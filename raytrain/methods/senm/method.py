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

from collections import deque
from collections.abc import Callable

import numpy as np
import torch
import torch.distributed as dist

from raytrain.losses.adversarial import lsgan_d, lsgan_target, ragan_d, ragan_g
from raytrain.methods.base import Method, StepOutput, make_scheduler, mix_probabilities
from raytrain.methods.perceptual_options import build_perceptual_loss
from raytrain.methods.senm.levels import LevelStats
from raytrain.methods.senm.nets import LevelNet, SeNMVAE
from raytrain.methods.senm.synthesis import Synthesis
from raytrain.metrics import PROFILE, STRUCTURE
from raytrain.nn.blocks import PatchDiscriminator


class SeNM(Synthesis, Method):
    name = "senm"
    domains = ("paired", "source", "target")
    inference_nets = ("vae", "levels")
    grad_sync = True
    restores = False
    val_keys = ("kld", "kld_noisy", "akld", "noise_std", "noise_std_real", "rho", "rho_real", "content_floor",
                "zn_std", *STRUCTURE, *PROFILE, *(f"{k}_real" for k in (*STRUCTURE, *PROFILE)))  # fmt: skip
    headline = ("kld", "noise KLD {:.4f}", "min")

    optional_domains = ("source", "target")

    @classmethod
    def domains_for(cls, cfg) -> tuple[str, ...]:
        """The paired domain, plus source and target unless ``data.mix`` gives them 0 (Table 7's rows without one)
        or the split leaves them empty (``paired.fraction: 1.0``: the launcher then sets their mix to 0). Table 6:
        without -log p(x|z) the source domain has no term left."""
        mix = cfg.data.mix
        return ("paired",) + tuple(
            d for d in ("source", "target") if mix.get(d, 0) > 0 and (d != "source" or cfg.method.rec_x)
        )

    def __init__(self, cfg, device: torch.device, prepare: Callable | None = None, inference: bool = False):
        super().__init__(cfg, device, prepare)
        m = self.m = cfg.method
        self.domains = self.domains_for(cfg)
        self.draw = "one" if m.domain_sampling == "batch" else "all"
        self.nets["vae"] = self.replicate(SeNMVAE(self.channels, m))
        self.nets["levels"] = self.replicate(LevelStats(m.level_reservoir, m.level_pred_tolerance))
        self._recent_pairs: deque[tuple[torch.Tensor, torch.Tensor]] = deque(maxlen=8)
        if inference:
            return
        self.nets["level_net"] = self.replicate(LevelNet(self.channels, m.level_net_width))
        self.nets["disc"] = self.replicate(PatchDiscriminator(self.channels, m.disc_width, m.disc_layers))
        self.perceptual = build_perceptual_loss(m, cfg.seed, device)
        tc = cfg.train
        vae_params = [*self.nets["vae"].parameters(), *self.nets["level_net"].parameters()]
        self.optimizers["vae"] = torch.optim.Adam(vae_params, lr=tc.lr, weight_decay=tc.weight_decay)
        self.optimizers["disc"] = torch.optim.Adam(self.nets["disc"].parameters(), lr=tc.lr)
        self.schedulers = {k: make_scheduler(opt, tc) for k, opt in self.optimizers.items()}

    # ------------------------------------------------------------------------------------------------ losses
    def domain_terms(self, domain: str, x: torch.Tensor | None, y: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Per-sample (N,) terms of eq. 11 for one domain's batch (mixture weights applied), plus ``_rec_y`` (the
        noisy reconstructions) for the GAN step."""
        vae = self.nets["vae"]
        acts_x = vae.enc_x(x) if x is not None else None
        acts_y = vae.enc_y(y) if y is not None else None
        acts_n = vae.enc_n(y) if y is not None else None
        terms: dict[str, torch.Tensor] = {}
        level = self._level(domain, x, y, terms) if y is not None else None
        if acts_x is not None and acts_y is not None:
            passes = self._paired_passes(acts_x, acts_y, x)
            self._recent_pairs.append((x.detach(), y.detach()))  # for the auto temperature (training pairs only)
        else:
            p = self.m.mixture_p1 if acts_x is not None else 1 - self.m.mixture_p1  # source: p1, target: p2 (eq. 11)
            w = 2 * p if self.m.mixture == "paper" else 1.0
            passes = {"x": (acts_x, acts_y, None, w), "y": (acts_x, acts_y, None, w)}
        if x is not None and self.m.rec_x or passes.get("kl_z"):
            ax, ay, pick, w = passes["x"]
            out_x, kl_z, _ = vae.top_down(ax, ay, pick_x=pick)
            if x is not None and self.m.rec_x:
                terms["rec_x"] = w * (out_x - x).pow(2).mean(dim=(1, 2, 3))
            if passes.get("kl_z"):
                terms["kl_z"] = kl_z
        if y is not None:
            ax, ay, pick, w = passes["y"]
            out_y, kl_zy, kl_n = vae.top_down(ax, ay, acts_n, level, pick_x=pick, noise="posterior")
            terms["rec_y"] = w * (out_y - y).pow(2).mean(dim=(1, 2, 3))
            terms["kl_n"] = w * kl_n
            if self.m.mixture == "official" and "kl_z" in terms:
                terms["kl_z"] = terms["kl_z"] + kl_zy  # the official klz_H + klz_L
            if self.perceptual is not None:
                terms["perc"] = self._perc(out_y, y)
            terms["_rec_y"] = out_y
        return terms

    def _paired_passes(self, acts_x, acts_y, ref: torch.Tensor) -> dict:
        """(acts_x, acts_y, pick_x, weight) of the rec_x and rec_y passes of a paired batch.

        ``paper`` (eq. 11): rec_y and KL_n with z ~ q(z|x) (weight 2 p1: the path synthesis uses); rec_x with
        z ~ q(z|y) (weight 2 p2) and lambda KL(q(z|y) || q(z|x)) along it. ``official``: each pass draws z per sample
        from q(z|x) with probability p1, else from q(z|y); both passes add their KL_z."""
        n, p1 = ref.shape[0], self.m.mixture_p1
        if self.m.mixture == "paper":
            zeros = ref.new_zeros(n, 1, 1, 1)
            return {"x": (acts_x, acts_y, zeros, 2 * (1 - p1)), "y": (acts_x, None, None, 2 * p1), "kl_z": True}
        return {"x": (acts_x, acts_y, self._pick(n, ref), 1.0), "y": (acts_x, acts_y, self._pick(n, ref), 1.0),
                "kl_z": True}  # fmt: skip

    def _level(self, domain: str, x: torch.Tensor | None, y: torch.Tensor, terms: dict) -> torch.Tensor:
        """The level channel: std(y - x) of a real pair (and the level net's L1 error on it), else the level net's
        prediction (detached unless ``level_detach`` is off); recorded for the synthesis level prior."""
        pred = self.nets["level_net"](y)
        levels = self.nets["levels"]
        if domain == "paired":
            level = (y - x).std(dim=(1, 2, 3), keepdim=True)  # the true level of a real pair
            terms["level"] = (level - pred).abs().flatten()
            levels.add(level.flatten(), error=terms["level"].detach())
            return level
        level = pred.detach() if self.m.level_detach else pred
        levels.add(level.detach().flatten(), predicted=True)
        return level

    def _pick(self, n: int, ref: torch.Tensor) -> torch.Tensor:
        """Which samples draw z from q(z|x) (probability p1) rather than q(z|y): the official coin of eq. 5."""
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
        out = {k: float(v.detach()) for k, v in terms.items()}
        if ok:
            params = [*self.nets["vae"].parameters(), *self.nets["level_net"].parameters()]
            total = sum(weighted.values())
            out["loss"] = float(total.detach())  # the weighted objective the VAE step minimised
            ok = self.update(total, self.optimizers["vae"], params, self.m.grad_clip, self.m.grad_skip)
        if fake and self.m.adv_weight > 0:
            d_loss = self._gan_d(disc(torch.cat(real)), disc(torch.cat(fake).detach()))
            ok &= self.update(d_loss, self.optimizers["disc"], disc.parameters())
            out["d_loss"] = float(d_loss.detach())
        out["kl_weight"] = w["kl_n"]
        return StepOutput(out, skipped=not ok)

    def draw_counts(self, step: int) -> dict[str, int] | None:
        """``domain_sampling: sample``: the batch's samples spread over the domains by ``data.mix``, drawn from an
        RNG seeded by the step (identical on every rank); ``batch``: None (one whole domain batch per step)."""
        if self.draw == "one":
            return None
        p = mix_probabilities(self.cfg.data.mix, self.domains)
        counts = np.random.default_rng([self.cfg.seed, 5151, step]).multinomial(self.cfg.train.batch_size, p)
        return {d: int(c) for d, c in zip(self.domains, counts, strict=True) if c}

    def _split(self, batches: dict, step: int) -> dict[str, dict[str, torch.Tensor]]:
        """The sub-batch of every domain this step: one whole batch (``batch``), or the first :meth:`draw_counts`
        samples of each domain (``sample``; the loop already hands over exactly that many)."""
        counts = self.draw_counts(step)
        if counts is None:
            return batches
        return {d: {k: v[:c] for k, v in batches[d].items()} for d, c in counts.items()}

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
