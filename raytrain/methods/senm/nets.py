"""SeNM-VAE networks: the hierarchical VAE of Fig. 3, the noise-level prediction net and the PatchGAN discriminator.

Notation as the paper: x is the clean image, y the noisy one, z the content latents, z_n the noise latents, l the
noise level (std of y - x on the [0, 1] scale). Three bottom-up branches give the features of every latent group:
``enc_x`` for q(z | x), ``enc_y`` for q(z | y), ``enc_n`` (reading y) for q(z_n | y, z). One top-down decoder serves
p(x | z) (content latents only) and p(y | z, z_n) (content and noise latents), as in the official code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from raytrain.losses.kl import gaussian_kl_two
from raytrain.nn.rdb import DownSample, GaussianHead, ResidualDenseBlock, UpSample


def group_layout(blocks_per_scale: tuple[int, ...]) -> list[str]:
    """Kind of every latent group bottom-up: ``block`` (an RDB at the scale's resolution) or ``down`` (a downsampling
    step, whose latent lives at the lower resolution). (2, 4) -> 2 blocks, down, 4 blocks: 7 groups."""
    kinds: list[str] = []
    for i, n in enumerate(blocks_per_scale):
        kinds += ["block"] * n
        if i < len(blocks_per_scale) - 1:
            kinds.append("down")
    return kinds


class Branch(nn.Module):
    """Bottom-up encoder: 1x1 stem (+ ``num_down`` pixel-unshuffles), then one block per latent group (eq. 15)."""

    def __init__(self, cin: int, width: int, growth: int, layout: list[str], num_down: int):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(cin, width, 1), *[DownSample(width, width) for _ in range(num_down)])
        self.blocks = nn.ModuleList(
            ResidualDenseBlock(width, growth) if k == "block" else DownSample(width, width) for k in layout
        )

    def forward(self, img: torch.Tensor) -> list[torch.Tensor]:
        h, acts = self.stem(img), []
        for block in self.blocks:
            h = block(h)
            acts.append(h)
        return acts


def _sample(
    mean: torch.Tensor,
    logstd: torch.Tensor,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    kernel: torch.Tensor | None = None,
) -> torch.Tensor:
    """mean + T * std * eps; T = 0 is the mean itself (no draw). ``generator`` makes the draw replayable; ``kernel``
    (C, C, k, k) colours eps across space and channels (the fitted prior), else eps is white."""
    if temperature == 0:
        return mean
    if kernel is None:
        eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
    else:
        eps = _colored(mean.shape, kernel, generator, mean)
    return mean + temperature * logstd.exp() * eps


def cross_spectrum(e: torch.Tensor) -> torch.Tensor:
    """Summed cross-spectral density of a batch of C-channel fields (N, C, H, W) -> (H, W, C, C), complex:
    sum over the batch of F(f) F(f)^H / (H W), F the 2-D DFT of each field (per-channel mean over the batch removed)."""
    f = torch.fft.fft2((e - e.mean(dim=(0, 2, 3), keepdim=True)).double()).permute(2, 3, 0, 1)  # H, W, N, C
    return torch.einsum("hwnc,hwnd->hwcd", f, f.conj()) / (e.shape[-2] * e.shape[-1])


def color_kernel(spectrum: torch.Tensor, count: float, size: int) -> torch.Tensor:
    """The (C, C, size, size) convolution kernel K whose output on white N(0, 1) fields has the cross-spectral density
    ``spectrum / count`` (as summed by :func:`cross_spectrum` over ``count`` fields): K(f) = S(f)^(1/2), the Hermitian
    square root at every frequency, back in space, centred and cropped to ``size`` (odd). Real by S's symmetry."""
    return _crop_kernel(_psd_power(spectrum / count, 0.5), size).float()


def _psd_power(s: torch.Tensor, power: float) -> torch.Tensor:
    """S^power for a stack of Hermitian PSD matrices (..., C, C); eigenvalues below 1e-6 of the largest are floored
    there (a negative power of a near-null direction stays bounded)."""
    s = (s + s.conj().transpose(-1, -2)) / 2
    val, vec = torch.linalg.eigh(s)
    val = val.clamp(min=float(val.max()) * 1e-6 if power < 0 else 0.0).pow(power)
    return vec @ torch.diag_embed(val.to(vec.dtype)) @ vec.conj().transpose(-1, -2)


def _crop_kernel(h: torch.Tensor, size: int) -> torch.Tensor:
    """A frequency response (H, W, C, C) -> its (C, C, size, size) convolution kernel, centred and cropped."""
    k = torch.fft.ifft2(h.permute(2, 3, 0, 1)).real  # C, C, H, W with the origin at [0, 0]
    r = size // 2
    return torch.roll(k, shifts=(r, r), dims=(2, 3))[..., :size, :size]


def match_kernel(target: torch.Tensor, source: torch.Tensor, size: int) -> torch.Tensor:
    """The (C, C, size, size) kernel H that turns a stationary field with cross-spectral density ``source``
    (H, W, C, C) into one with the shape of ``target``: H(f) = T(f)^(1/2) S(f)^(-1/2), centred and cropped to ``size``,
    then scaled so that the filtered field keeps the source's power (sum over f of tr H S H^H = sum of tr S)."""
    h = _psd_power(target, 0.5) @ _psd_power(source, -0.5)
    k = _crop_kernel(h, size)
    r = size // 2
    grid = torch.zeros(*k.shape[:2], *source.shape[:2], dtype=k.dtype, device=k.device)
    grid[..., :size, :size] = k
    resp = torch.fft.fft2(torch.roll(grid, shifts=(-r, -r), dims=(2, 3))).permute(2, 3, 0, 1)  # H, W, C, C
    out = torch.einsum("hwij,hwjk,hwlk->hwil", resp, source.to(resp.dtype), resp.conj())
    power = torch.diagonal(out, dim1=-2, dim2=-1).real.sum()
    want = torch.diagonal(source, dim1=-2, dim2=-1).real.sum()
    return (k * (want / power).sqrt()).float()


def intensity_bins(clean: torch.Tensor, bins: int) -> torch.Tensor:
    """The intensity bin (0 .. bins - 1) of every value of ``clean`` in [0, 1]: ``bins`` equal bins."""
    return (clean.clamp(0, 1) * bins).long().clamp(max=bins - 1)


def channel_bins(bin_index: torch.Tensor, bins: int) -> torch.Tensor:
    """Bin indices (N, C, H, W) into a flattened (C, bins) table: channel c's bins start at c * bins."""
    return bin_index + (torch.arange(bin_index.shape[1], device=bin_index.device) * bins).view(1, -1, 1, 1)


def _bin_blend(clean: torch.Tensor, bins: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For every value of ``clean`` (N, C, H, W) in [0, 1]: the flattened (channel, bin) rows of the two nearest of
    ``bins`` equal bins' centres and the weight of the second (linear between centres, constant beyond the outer
    ones)."""
    t = (clean.clamp(0, 1) * bins - 0.5).clamp(0, bins - 1)
    k0 = t.floor().long().clamp(max=bins - 1)
    k1 = (k0 + 1).clamp(max=bins - 1)
    return channel_bins(k0, bins), channel_bins(k1, bins), t - k0


def intensity_gain(clean: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
    """The gain (N, C, H, W) at every pixel of ``clean`` (N, C, H, W) in [0, 1]: ``gain`` (C, B) holds one value per
    channel at each of B equal bins' centres, linearly interpolated between centres and constant beyond the outer
    ones."""
    r0, r1, w = _bin_blend(clean, gain.shape[1])
    flat = gain.to(clean.dtype).flatten()
    return flat[r0] * (1 - w) + flat[r1] * w


def marginal_probs() -> torch.Tensor:
    """The probabilities of ``amplitude: marginal``'s quantile knots: a normal's quantiles at 25 equally spaced
    z in [-2.75, 2.75] (p 0.003 .. 0.997), dense in the body where the noise is, a few in each tail."""
    return 0.5 * (1 + torch.erf(torch.linspace(-2.75, 2.75, 25, dtype=torch.float64) / 2**0.5))


def normal_quantiles(probs: torch.Tensor) -> torch.Tensor:
    """A standard normal's quantiles at ``probs``: ``amplitude: marginal``'s identity knots."""
    return torch.erfinv(2 * probs - 1) * 2**0.5


def _map_rows(z: torch.Tensor, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """The monotone map that sends the knots ``src`` to ``dst``, one row of knots (P, J, increasing) per value of ``z``
    (P,): linear between knots; beyond the outer ones linear with the slope of the chord from the middle knot to the
    outer one (a tail's spread, less noisy than the outer segment's)."""
    j = src.shape[-1]
    k = torch.searchsorted(src, z.unsqueeze(-1)).squeeze(-1).clamp(1, j - 1)  # the segment [k - 1, k]
    s0, s1 = src.gather(-1, (k - 1).unsqueeze(-1)).squeeze(-1), src.gather(-1, k.unsqueeze(-1)).squeeze(-1)
    d0, d1 = dst.gather(-1, (k - 1).unsqueeze(-1)).squeeze(-1), dst.gather(-1, k.unsqueeze(-1)).squeeze(-1)
    inside = d0 + (d1 - d0) * (z - s0) / (s1 - s0).clamp(min=1e-12)
    mid = j // 2
    lo_slope = (dst[:, mid] - dst[:, 0]) / (src[:, mid] - src[:, 0]).clamp(min=1e-12)
    hi_slope = (dst[:, -1] - dst[:, mid]) / (src[:, -1] - src[:, mid]).clamp(min=1e-12)
    below = dst[:, 0] + lo_slope * (z - src[:, 0])
    above = dst[:, -1] + hi_slope * (z - src[:, -1])
    return torch.where(z < src[:, 0], below, torch.where(z > src[:, -1], above, inside))


def intensity_map(clean: torch.Tensor, z: torch.Tensor, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Every value of ``z`` (N, C, H, W) sent through the monotone map of its pixel's clean value: ``src`` / ``dst``
    (C, B, J) hold, per channel and each of B equal bins of the clean value, J increasing quantiles of the noise as it
    is and as it should be; the maps of the two nearest bin centres are applied and blended linearly between centres
    (constant beyond the outer ones), as :func:`intensity_gain` blends gains. A blend of monotone maps is monotone."""
    c, b, j = src.shape
    r0, r1, w = (v.flatten() for v in _bin_blend(clean, b))
    src, dst = src.to(z.dtype).reshape(c * b, j), dst.to(z.dtype).reshape(c * b, j)
    flat = z.flatten()
    out = _map_rows(flat, src[r0], dst[r0]) * (1 - w) + _map_rows(flat, src[r1], dst[r1]) * w
    return out.view_as(z)


def _identity_kernel(channels: int, size: int) -> torch.Tensor:
    """The (C, C, size, size) kernel that leaves a field as it is (1 at the centre of each channel's own tap)."""
    k = torch.zeros(channels, channels, size, size)
    k[range(channels), range(channels), size // 2, size // 2] = 1.0
    return k


def filter_field(field: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """``field`` (N, C, H, W) convolved with ``kernel`` (C, C, k, k), same size: reflected at the borders (replicated
    where the field is too small to reflect)."""
    r = kernel.shape[-1] // 2
    if r == 0:
        return F.conv2d(field, kernel.to(field.dtype))
    mode = "reflect" if min(field.shape[-2:]) > r else "replicate"
    return F.conv2d(F.pad(field, (r, r, r, r), mode=mode), kernel.flip(-1, -2).to(field.dtype))


def _colored(shape: torch.Size, kernel: torch.Tensor, generator: torch.Generator | None, like: torch.Tensor):
    """White N(0, 1) drawn on a margin-padded field, convolved with ``kernel`` (C, C, k, k): a field of ``shape``."""
    n, c, h, w = shape
    k = kernel.shape[-1]
    white = torch.randn((n, c, h + k - 1, w + k - 1), generator=generator, dtype=like.dtype, device=like.device)
    return F.conv2d(white, kernel.flip(-1, -2).to(like.dtype))  # flipped: a true convolution


def _kl(q: tuple[torch.Tensor, torch.Tensor], p: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Per-sample mean over (C, H, W) of KL(q || p) for diagonal Gaussians given as (mean, log-std)."""
    return gaussian_kl_two(q[0], 2 * q[1], p[0], 2 * p[1]).mean(dim=(1, 2, 3))


def _zero_conv(cin: int, cout: int) -> nn.Conv2d:
    conv = nn.Conv2d(cin, cout, 1)
    conv.weight.data.zero_()  # latents enter the decoder gradually (official: zero_weight_nets)
    return conv


LEVEL_REF = 10 / 255  # method.level_modulation: z_n's contribution at this level is the unscaled one


class SeNMVAE(nn.Module):
    """The hierarchical VAE. :meth:`top_down` is the one decoding pass; the public methods name its uses."""

    def __init__(self, channels: int, m):
        super().__init__()
        layout = group_layout(tuple(m.blocks_per_scale))
        self.layout = layout
        w, lv = m.width, int(m.level_conditioning)
        self.level_conditioning = m.level_conditioning
        self.level_modulation = m.level_modulation
        self.enc_x = Branch(channels, w, m.growth, layout, m.num_down)
        self.enc_y = Branch(channels, w, m.growth, layout, m.num_down)
        self.enc_n = Branch(channels, w, m.growth, layout, m.num_down)
        groups = range(len(layout))
        self.q_z_x = nn.ModuleList(GaussianHead(w, m.z_dim, m.growth) for _ in groups)
        self.q_z_y = nn.ModuleList(GaussianHead(w, m.z_dim, m.growth) for _ in groups)
        for head in (*self.q_z_x, *self.q_z_y):  # the content posteriors' starting std (official: 1)
            head.logstd[1].bias.data.fill_(m.content_logstd_init)
        self.q_zn = nn.ModuleList(GaussianHead(w + lv, m.zn_dim, m.growth) for _ in groups)
        self.p_zn = nn.ModuleList(GaussianHead(w + lv, m.zn_dim, m.growth) for _ in groups)
        self.proj_z = nn.ModuleList(_zero_conv(m.z_dim, w) for _ in groups)
        self.proj_zn = nn.ModuleList(_zero_conv(m.zn_dim, w) for _ in groups)
        self.dec = nn.ModuleList(ResidualDenseBlock(w, m.growth) if k == "block" else UpSample(w, w) for k in layout)
        self.out = nn.Sequential(*[UpSample(w, w) for _ in range(m.num_down)], nn.Conv2d(w, w, 3, padding=1),
                                 nn.ReLU(inplace=True), nn.Conv2d(w, channels, 3, padding=1))  # fmt: skip
        self.stride = 2 ** (m.num_down + len(m.blocks_per_scale) - 1)  # image sides must divide by this
        # prior: colored -> z_n's prior draws are coloured by a kernel per group fitted on the aggregate posterior
        # (``SeNM.fit_colors``); starts as the identity (a white draw), which is the paper's diagonal prior
        self.colored_prior = m.prior == "colored"
        k = m.color_size
        self.register_buffer("zn_color", _identity_kernel(m.zn_dim, k).repeat(len(layout), 1, 1, 1, 1))
        # likelihood: sample -> p(y | z, z_n) = N(D(z, z_n), level^2 K K^T), K fitted on what D does not explain
        self.register_buffer("y_color", torch.zeros(channels, channels, k, k))
        # spectrum: matched -> the synthetic noise filtered by H (``SeNM.fit_spectrum``); the identity until fitted.
        # Only built when asked, so checkpoints of the other settings load as they are
        if m.spectrum == "matched":
            self.register_buffer("noise_filter", _identity_kernel(channels, k))
        # amplitude: matched -> the synthetic noise times a gain per clean value (``SeNM.fit_amplitude``), per channel
        # and intensity bin; 1 until fitted. Only built when asked, as the filter
        if m.amplitude in ("matched", "marginal"):
            self.register_buffer("noise_gain", torch.ones(channels, m.amplitude_bins))
        # amplitude: marginal -> the gain, then the synthetic noise sent through a monotone map per clean value
        # (``SeNM.fit_marginal``): the quantiles of the gained synthetic noise (row 0) and of the real one (row 1) per
        # channel and intensity bin, in units of the level; the identity until fitted
        if m.amplitude == "marginal":
            knots = normal_quantiles(marginal_probs())
            self.register_buffer("noise_quantiles", knots.float().expand(2, channels, m.amplitude_bins, -1).clone())

    def _cond(self, h: torch.Tensor, level: torch.Tensor | None) -> torch.Tensor:
        """Concatenate the noise level (N, 1, 1, 1) as a constant channel (official ``cat_degrade_level``)."""
        if not self.level_conditioning:
            return h
        return torch.cat([h, level.to(h.dtype).expand(h.shape[0], 1, *h.shape[2:])], 1)

    def _modulate(self, h: torch.Tensor, level: torch.Tensor | None) -> torch.Tensor:
        """``level_modulation``: z_n's contribution scaled by level / LEVEL_REF (what it adds to the decoder, hence the
        noise it drives, grows with the level by construction), else as it is."""
        if not self.level_modulation or level is None:
            return h
        return h * (level.to(h.dtype) / LEVEL_REF)

    def top_down(
        self,
        acts_x: list[torch.Tensor] | None,
        acts_y: list[torch.Tensor] | None,
        acts_n: list[torch.Tensor] | None = None,
        level: torch.Tensor | None = None,
        pick_x: torch.Tensor | None = None,
        noise: str = "none",
        temperature: float = 1.0,
        content_temperature: float = 1.0,
        content_generator: torch.Generator | None = None,
        record: list | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Decode top-down through every group. Returns (output, KL_z, KL_n), the KLs per sample summed over groups.

        z_l comes from q(z_l | x, .) where ``pick_x`` (N, 1, 1, 1) is 1 and from q(z_l | y, .) where it is 0 (the
        mixture of eq. 5); with one branch only, from that branch. KL_z = KL(q(z | y) || q(z | x)) when both are given.
        ``noise``: ``none`` -> p(x | z); ``posterior`` -> z_n ~ q(z_n | y, z) and KL_n = KL(q || p(z_n | z)), for
        p(y | z, z_n); ``prior`` -> z_n ~ p(z_n | z) at ``temperature`` (synthesis; 0 = the prior means).
        ``content_temperature`` 0 decodes the posterior means of z; ``content_generator`` replays the same z draws.
        ``record`` (posterior only) receives, group by group, z_n's posterior draw standardised by its prior,
        (z_n - mean_p) / std_p: samples of the aggregate posterior in the prior's units (``SeNM.fit_colors``).
        """
        first = acts_x if acts_x is not None else acts_y
        dec: torch.Tensor | float = 0.0
        kl_z = kl_n = first[0].new_zeros(first[0].shape[0])
        for g in reversed(range(len(self.layout))):
            qx = self.q_z_x[g](dec + acts_x[g]) if acts_x is not None else None
            qy = self.q_z_y[g](dec + acts_y[g]) if acts_y is not None else None
            if qx is not None and qy is not None:
                kl_z = kl_z + _kl(qy, qx)
                z = torch.where(pick_x.bool(), _sample(*qx), _sample(*qy))
            else:
                z = _sample(*(qx if qx is not None else qy), content_temperature, content_generator)
            dec = dec + self.proj_z[g](z)
            if noise != "none":
                prior = self.p_zn[g](self._cond(dec, level))
                if noise == "posterior":
                    post = self.q_zn[g](self._cond(dec + acts_n[g], level))
                    kl_n = kl_n + _kl(post, prior)
                    zn = _sample(*post)
                    if record is not None:
                        record.append(((zn - prior[0]) / prior[1].exp()).detach())
                else:
                    kernel = self.zn_color[g] if self.colored_prior else None
                    zn = _sample(*prior, temperature, kernel=kernel)
                dec = dec + self._modulate(self.proj_zn[g](zn), level)
            dec = self.dec[g](dec)
        return self.out(dec), kl_z, kl_n

    @torch.no_grad()
    def posterior_fit(
        self, clean: torch.Tensor, noisy: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """What the fitted prior and likelihood are fitted to, on real pairs at their true levels, with z the posterior
        means of q(z | x) (the content synthesis decodes) and z_n ~ q(z_n | y, z): the real noise (y - x) / level;
        the part of it the decoder explains, (D(z, z_n) - D(z, mean_p z_n)) / level; and per group z_n standardised
        by its prior, (z_n - mean_p) / std_p."""
        level = (noisy - clean).std(dim=(1, 2, 3), keepdim=True)
        acts = self.enc_x(clean)
        record: list[torch.Tensor] = []
        out = self.top_down(acts, None, self.enc_n(noisy), level, noise="posterior", content_temperature=0.0,
                            record=record)[0]  # fmt: skip
        mean = self.top_down(acts, None, level=level, noise="prior", temperature=0.0, content_temperature=0.0)[0]
        return (noisy - clean) / level, (out - mean) / level, record[::-1]  # top-down order -> group order

    def likelihood_noise(self, shape: torch.Size, level: torch.Tensor) -> torch.Tensor:
        """A draw of p(y | z, z_n)'s fitted stationary noise at ``level`` (N, 1, 1, 1) (zero until fitted)."""
        return _colored(shape, self.y_color, None, level) * level

    @torch.no_grad()
    def synthesize(self, clean: torch.Tensor, level: torch.Tensor | None, temperature: float = 1.0,
                   content: str = "sample") -> torch.Tensor:  # fmt: skip
        """Ancestral sampling of Fig. 1b: z ~ q(z | x) (``content: mean``: its means), z_n ~ p(z_n | z, l) at
        ``temperature``, y = the mean of p(y | z, z_n): the full decoder output (the official synthesis)."""
        ct = 0.0 if content == "mean" else 1.0
        return self.top_down(self.enc_x(clean), None, level=level, noise="prior", temperature=temperature,
                             content_temperature=ct)[0]  # fmt: skip

    @torch.no_grad()
    def noise_part(
        self, clean: torch.Tensor, level: torch.Tensor | None, temperature: float = 1.0, content: str = "mean"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(D(z, z_n), D(z, mean z_n)): the decoder output with z_n ~ p(z_n | z, l) and with z_n at the prior means,
        the same content draws z ~ q(z | x) in both (their means for ``content: mean``). Their difference is the part
        of the output that z_n drives; the second minus x is the decoder's content error (the content floor)."""
        ct = 0.0 if content == "mean" else 1.0
        acts = self.enc_x(clean)
        seed = int(torch.randint(2**62, (1,)))
        outs = [self.top_down(acts, None, level=level, noise="prior", temperature=t, content_temperature=ct,
                              content_generator=torch.Generator(clean.device).manual_seed(seed))[0]
                for t in (temperature, 0.0)]  # fmt: skip
        return outs[0], outs[1]

    @torch.no_grad()
    def denoise(self, noisy: torch.Tensor) -> torch.Tensor:
        """z ~ q(z | y), x = mean of p(x | z): the VAE's own clean estimate (shown in validation grids)."""
        return self.top_down(None, self.enc_y(noisy))[0]


class LevelNet(nn.Module):
    """Noise-level prediction from a noisy image: 4 stride-2 convs, global average pooling, a 3-layer MLP."""

    def __init__(self, channels: int, width: int = 64):
        super().__init__()
        w = [width, 2 * width, 4 * width, 8 * width]
        convs: list[nn.Module] = []
        for cin, cout in zip([channels, *w[:-1]], w, strict=True):
            convs += [nn.Conv2d(cin, cout, 4, 2, 1), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*convs[:-1], nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(nn.Linear(w[3], w[2]), nn.ReLU(inplace=True), nn.Linear(w[2], w[1]),
                                  nn.ReLU(inplace=True), nn.Linear(w[1], 1))  # fmt: skip

    def forward(self, noisy: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, 1, 1, 1) predicted std of the noise on the [0, 1] scale."""
        return self.head(self.features(noisy)).view(-1, 1, 1, 1)
