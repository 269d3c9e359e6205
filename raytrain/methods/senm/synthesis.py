"""SeNM-VAE's synthesis side: noisy images for clean ones (Fig. 1b), the ex-post fits it uses (the ``auto``
temperature, the coloured prior and the sampled likelihood, refitted before every validation on the recent real
training pairs) and what validation reports about the learned noise. A mixin of
:class:`~raytrain.methods.senm.method.SeNM`: it reads ``self.m``, ``self.nets``, ``self.device`` and
``self._recent_pairs``."""

from __future__ import annotations

import torch
import torch.distributed as dist

from raytrain.evaluate import noise_rows
from raytrain.layout import to_tensor
from raytrain.methods.senm.nets import (
    channel_bins,
    color_kernel,
    cross_spectrum,
    filter_field,
    intensity_bins,
    intensity_gain,
    intensity_map,
    marginal_probs,
    match_kernel,
    normal_quantiles,
)
from raytrain.nn.ops import pad_to_multiple

# amplitude: matched / marginal - how each bin's power / quantiles are regularised: toward its neighbouring bins' by
# ``AMPLITUDE_PRIOR_PIXELS`` pseudo-pixels per neighbour (a sparse bin at the end of the range takes its neighbour's,
# one between two their mean), and toward the channel's pooled ones by ``AMPLITUDE_POOLED_PIXELS`` (only decides when
# no bin has pixels); and the range a gain may take
AMPLITUDE_PRIOR_PIXELS = 512
AMPLITUDE_POOLED_PIXELS = 1
AMPLITUDE_RANGE = (0.25, 4.0)
# amplitude: marginal - the histograms the quantiles are read from (in units of the level: HIST_BINS over +-HIST_HALF,
# values beyond in the outer bins)
HIST_HALF, HIST_BINS = 12.0, 4800
MARGINAL_CLIPPED = 0.01


class Synthesis:
    @torch.no_grad()
    def synthesize(self, clean: torch.Tensor, level: torch.Tensor | None = None, temperature: float | None = None,
                   mode: str | None = None, content: str | None = None, normalize: bool | None = None,
                   matched: bool | None = None, amplitude: bool | str | None = None):  # fmt: skip
        """Noisy images for a batch of clean ones (N, C, H, W) in [0, 1], any size. ``level`` (N, 1, 1, 1) on the
        [0, 1] scale, default: drawn from the level prior. ``temperature`` scales the std of z_n's prior draws (0: the
        prior means; the official code scales the whole draw, so its T = 0 is z_n = 0; the two agree at 1); default:
        ``method.temperature`` (``auto``: the calibrated one, see :meth:`calibrate_temperature`).

        ``mode`` (default ``method.synthesis``): ``full`` returns the decoder output D(z, z_n), z ~ q(z|x) (the
        official synthesis: the decoder's content error lands in the noise); ``residual`` returns
        x + D(mu, z_n) - D(mu, mean z_n) with mu the posterior means of q(z|x): only the part z_n drives is added to
        the real clean image, so content error cancels. ``content`` (full only): ``sample`` or ``mean`` z.
        ``normalize``: shift each image's mean to the clean image's (the official ``--normalize``).
        ``matched`` (default: ``method.spectrum == "matched"``): the synthetic noise filtered by the fitted H
        (:meth:`fit_spectrum`). ``amplitude`` (default / True: ``method.amplitude``; False: neither; ``"gain"``: the
        gain only): ``matched`` multiplies the noise by the fitted gain at each pixel's clean value
        (:meth:`fit_amplitude`), ``marginal`` then sends it through the fitted monotone map at each pixel's clean
        value, in units of the level (:meth:`fit_marginal`)."""
        m, vae = self.m, self.nets["vae"]
        mode, content = mode or m.synthesis, content or m.content
        normalize = m.normalize if normalize is None else normalize
        temperature = self.temperature if temperature is None else temperature
        if level is None:
            level = self.nets["levels"].sample(clean.shape[0]).to(clean.device).view(-1, 1, 1, 1)
        h, w = clean.shape[-2:]
        x = pad_to_multiple(clean, vae.stride)
        if mode == "residual":
            noisy, mean = vae.noise_part(x, level, temperature, content="mean")
            out = clean + (noisy - mean)[..., :h, :w]
        else:
            out = vae.synthesize(x, level, temperature, content)[..., :h, :w]
        if m.likelihood == "sample" and temperature > 0:
            out = out + vae.likelihood_noise(out.shape, level)
        if (m.spectrum == "matched") if matched is None else matched:
            out = clean + filter_field(out - clean, vae.noise_filter)
        kind = m.amplitude if amplitude in (None, True) else "model" if amplitude is False else amplitude
        if kind in ("matched", "marginal", "gain"):
            out = clean + intensity_gain(clean, vae.noise_gain) * (out - clean)
        if kind == "marginal":
            lv = level.to(out.dtype).view(-1, 1, 1, 1).clamp(min=1e-6)
            q = vae.noise_quantiles
            out = clean + lv * intensity_map(clean, (out - clean) / lv, q[0], q[1])
        if normalize:
            out = out - out.mean(dim=(2, 3), keepdim=True) + clean.mean(dim=(2, 3), keepdim=True)
        return out

    @property
    def temperature(self) -> float:
        """The synthesis temperature ``method.temperature`` names: a number, or the calibrated one for ``auto``."""
        t = self.m.temperature
        return float(self.nets["levels"].temperature) if t == "auto" else float(t)

    @torch.no_grad()
    def calibrate_temperature(self, rounds: int = 2) -> float | None:
        """Fit the ``auto`` temperature on the recent real *training* pairs: the T at which the synthetic noise on
        those patches, each at its own true level, has the RMS of the real noise (two fixed-point rounds, as the noise
        amplitude is close to linear in T). Corrects a diagonal prior's under-dispersion: the posterior spreads one
        noise signal over several correlated z_n channels, whose independent prior draws partly cancel. Sums are
        all-reduced over ranks, so every rank stores the same T. Returns it (None: no pairs seen since the start)."""
        t = float(self.nets["levels"].temperature)
        for _ in range(rounds):
            sums = torch.zeros(3, dtype=torch.float64, device=self.device)
            for x, y in self._recent_pairs:
                level = (y - x).std(dim=(1, 2, 3), keepdim=True)
                out = self.synthesize(x, level, t, matched=False, amplitude=False)
                sums += torch.stack([(y - x).pow(2).sum(), (out - x).pow(2).sum(), x.new_tensor(x.numel())]).double()
            if dist.is_available() and dist.is_initialized():
                dist.all_reduce(sums)
            if sums[2] == 0 or sums[1] == 0:
                return None
            t = float(t * (sums[0] / sums[1]).sqrt())
        self.nets["levels"].temperature.fill_(min(t, 10.0))
        return float(self.nets["levels"].temperature)

    @torch.no_grad()
    def fit_colors(self) -> bool:
        """Fit the kernels ``prior: colored`` and ``likelihood: sample`` use on the recent real training pairs: each
        group's z_n colouring (the aggregate posterior's cross-spectrum in the prior's units) and the likelihood's:
        the real noise's spectrum less that of the part the decoder explains from posterior z_n (in units of the
        level), so that decoded draws plus the likelihood's draw have the real noise's second-order statistics (the
        reconstruction residual alone would miss its correlation with the decoded part). See
        :func:`~raytrain.methods.senm.nets.color_kernel`. Spectra are all-reduced, so every rank stores the same
        kernels. False when no pairs were seen (the kernels are kept as they are)."""
        vae = self.nets["vae"]

        def spectra(x, y):
            noise, explained, fields = vae.posterior_fit(x, y)
            return [cross_spectrum(noise) - cross_spectrum(explained), *(cross_spectrum(e) for e in fields)]

        summed = self._pair_spectra(spectra)
        if summed is None:
            return False
        sums, count = summed
        size = self.m.color_size
        if self.m.likelihood == "sample":
            vae.y_color.copy_(color_kernel(sums[0], float(count), size))
        if self.m.prior == "colored":
            for g, s in enumerate(sums[1:]):
                vae.zn_color[g].copy_(color_kernel(s, float(count), size))
        return True

    @torch.no_grad()
    def fit_spectrum(self) -> bool:
        """Fit ``spectrum: matched``'s filter on the recent real training pairs: H = S_real^(1/2) S_syn^(-1/2), the
        (cross-)spectra of the real noise and of the unfiltered synthetic noise, each pair at its true level and in
        units of it, H scaled to keep the synthetic noise's power (:func:`~raytrain.methods.senm.nets.match_kernel`).
        Spectra are all-reduced, so every rank stores the same H. False when no pairs were seen (H is kept)."""

        def spectra(x, y):
            level = (y - x).std(dim=(1, 2, 3), keepdim=True).clamp(min=1e-6)
            out = self.synthesize(x, level, matched=False, amplitude=False)
            return [cross_spectrum((y - x) / level), cross_spectrum((out - x) / level)]

        summed = self._pair_spectra(spectra)
        if summed is None:
            return False
        (real, syn), count = summed
        self.nets["vae"].noise_filter.copy_(match_kernel(real / count, syn / count, self.m.color_size))
        return True

    @torch.no_grad()
    def fit_amplitude(self, rounds: int = 2) -> bool:
        """Fit ``amplitude: matched``'s gain (and ``marginal``'s, which maps after it) on the recent real training
        pairs: per channel and bin of the clean value, g = sqrt(P_real / P_syn), the mean powers of the real noise and
        of the synthetic noise (after the spectrum's filter, before the gain), each pair at its true level and in
        units of it. Both sides are clipped to [0, 1] as a written image is, so the fit is a fixed point: ``rounds``
        updates of g on the same draws. The bins' powers are regularised toward their neighbours'
        (:func:`smooth_bins`): a bin the training pairs barely reach (the darks of ten mid-tone tiles) continues the
        profile of its neighbour, not the pooled ratio. Sums are all-reduced, so every rank stores the same gain.
        False when no pairs were seen (the gain is kept)."""
        vae, bins = self.nets["vae"], self.m.amplitude_bins
        draws = []  # per batch: x, its level, its unscaled synthesis, each pixel's (channel, bin) and real power
        for x, y in self._recent_pairs:
            level = (y - x).std(dim=(1, 2, 3), keepdim=True).clamp(min=1e-6)
            idx = channel_bins(intensity_bins(x, bins), bins).flatten()
            draws.append((x, level, self.synthesize(x, level, amplitude=False), idx, ((y - x) / level) ** 2))
        if not draws:
            return False
        gain = torch.ones_like(vae.noise_gain, dtype=torch.float64)
        for _ in range(rounds):
            sums = torch.zeros(3, *gain.shape, dtype=torch.float64, device=self.device)  # pixels, P_real, P_syn
            for x, level, raw, idx, real_power in draws:
                syn = (x + intensity_gain(x, gain) * (raw - x)).clamp(0, 1) - x
                for row, v in enumerate((torch.ones_like(x), real_power, (syn / level) ** 2)):
                    sums[row].view(-1).index_add_(0, idx, v.double().flatten())
            if dist.is_available() and dist.is_initialized():
                dist.all_reduce(sums)
            n, real, syn = sums
            p_real, p_syn = smooth_bins(real, n), smooth_bins(syn, n)
            gain = (gain * (p_real / p_syn.clamp(min=1e-12)).sqrt()).clamp(*AMPLITUDE_RANGE)
        vae.noise_gain.copy_(gain.to(vae.noise_gain.dtype))
        return True

    @torch.no_grad()
    def fit_marginal(self) -> bool:
        """Fit ``amplitude: marginal``'s maps on the recent real training pairs: per channel and bin of the clean
        value, the quantiles (at :func:`~raytrain.methods.senm.nets.marginal_probs`) of the real noise and of the
        synthetic noise after the spectrum's filter and the gain (the gain sets the level, the map the shape), each
        pair at its true level and in units of it, read from histograms (``HIST_BINS`` over +-``HIST_HALF``) that are
        all-reduced, so every rank stores the same maps. The bins' quantile functions are regularised toward their
        neighbours' (:func:`smooth_bins`); a bin whose real noise the clip cuts counts for nothing (it takes its
        neighbours' shape). What the map adds to the gain is what a camera's tone curve gives its noise beyond the
        std: a mean offset and a skew (the darks' noise biased and skewed low), heavier tails. False when no pairs
        were seen (the maps are kept)."""
        vae, bins = self.nets["vae"], self.m.amplitude_bins
        c = vae.noise_quantiles.shape[1]
        hist = torch.zeros(2, c * bins, HIST_BINS, dtype=torch.float64, device=self.device)  # real, synthetic
        clipped = torch.zeros(c * bins, dtype=torch.float64, device=self.device)  # real pixels at 0 or 1, per bin
        for x, y in self._recent_pairs:
            level = (y - x).std(dim=(1, 2, 3), keepdim=True).clamp(min=1e-6)
            idx = channel_bins(intensity_bins(x, bins), bins).flatten()
            clipped.index_add_(0, idx, ((y <= 0) | (y >= 1)).double().flatten())
            rows = idx * HIST_BINS
            syn = self.synthesize(x, level, amplitude="gain")
            for side, noise in enumerate((y - x, syn - x)):
                at = ((noise / level + HIST_HALF) * (HIST_BINS / (2 * HIST_HALF))).long().clamp(0, HIST_BINS - 1)
                hist[side].view(-1).index_add_(0, rows + at.flatten(), torch.ones_like(at.flatten(), dtype=hist.dtype))
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(hist)
            dist.all_reduce(clipped)
        if not hist.any():
            return False
        probs = marginal_probs().to(hist.device)
        by_bin = hist.view(2, c, bins, HIST_BINS)
        n = by_bin[0].sum(-1)  # pixels per (channel, bin): the same on both sides
        # a bin whose real noise the clip cuts (> MARGINAL_CLIPPED of its pixels at 0 or 1) says nothing of the
        # shape: weight 0, so it takes its neighbours' shape (the gain, fitted through the clip, keeps its level)
        n = torch.where(clipped.view(c, bins) > MARGINAL_CLIPPED * n, torch.zeros_like(n), n)
        q_bin = _hist_quantiles(by_bin, probs)
        q = torch.stack([smooth_bins(n.unsqueeze(-1) * q_bin[side], n) for side in range(2)])
        q = q + torch.arange(q.shape[-1], device=q.device, dtype=q.dtype) * 1e-6  # strictly increasing knots
        vae.noise_quantiles.copy_(torch.stack([q[1], q[0]]).to(vae.noise_quantiles.dtype))  # from synthetic to real
        return True

    def _pair_spectra(self, spectra) -> tuple[list[torch.Tensor], torch.Tensor] | None:
        """``spectra(x, y)`` (a list of summed cross-spectra) added up over the recent real training pairs and
        all-reduced over the ranks in one call: (sums, pair count), or None when no pairs were seen (every rank draws
        the same domains: all or none have pairs)."""
        sums: list[torch.Tensor] | None = None
        count = torch.zeros((), dtype=torch.float64, device=self.device)
        for x, y in self._recent_pairs:
            got = spectra(x, y)
            sums = got if sums is None else [a + b for a, b in zip(sums, got, strict=True)]
            count += x.shape[0]
        if sums is None:
            return None
        return sums, _all_reduce(count, sums)

    def before_validation(self) -> None:
        """The ex-post fits, in order: the prior's and the likelihood's kernels, the temperature (on the unfiltered
        synthesis), then the spectrum's filter (which keeps the power the temperature set), then the amplitude's gain
        (on the filtered synthesis)."""
        if self.m.prior == "colored" or self.m.likelihood == "sample":
            self.fit_colors()
        if self.m.temperature == "auto":
            self.calibrate_temperature()
        if self.m.spectrum == "matched":
            self.fit_spectrum()
        if self.m.amplitude in ("matched", "marginal"):
            self.fit_amplitude()
        if self.m.amplitude == "marginal":
            self.fit_marginal()

    @torch.no_grad()
    def evaluate(self, pairs: list, device) -> list[dict[str, float]]:
        """Noise quality on real (clean, noisy) HWC pairs, synthesised at each pair's true level; plus, per pair, the
        content floor (std of D(mu, mean z_n) - x) and the std of the part z_n drives (D(mu, z_n) - D(mu, mean z_n)),
        both on the 0..255 scale."""
        rows = noise_rows(lambda c, lv: self.synthesize(c, lv), pairs, device)
        for row, (clean, _) in zip(rows, pairs, strict=True):
            x = to_tensor(clean, device)
            s = self.nets["vae"].stride
            x = x[..., : x.shape[-2] - x.shape[-2] % s, : x.shape[-1] - x.shape[-1] % s]
            level = torch.full((1, 1, 1, 1), row["noise_std_real"] / 255, device=x.device)
            noisy, mean = self.nets["vae"].noise_part(x, level, self.temperature)
            row["content_floor"] = float((mean - x).std()) * 255
            row["zn_std"] = float((noisy - mean).std()) * 255
        return rows

    def state_summary(self) -> dict[str, float]:
        """The level prior beside the true paired levels (0..255) and the synthesis temperature, reported with every
        validation."""
        return self.nets["levels"].summary() | {"temperature": self.temperature}

    @torch.no_grad()
    def preview(self, clean: torch.Tensor, noisy: torch.Tensor) -> list[torch.Tensor]:
        """clean | real noisy | synthetic noisy (at the real level) | the VAE's clean estimate from the real noisy."""
        level = (noisy - clean).std().view(1, 1, 1, 1)
        h, w = clean.shape[-2:]
        s = self.nets["vae"].stride
        crop = (..., slice(0, h - h % s), slice(0, w - w % s))
        return [clean[crop], noisy[crop], self.synthesize(clean[crop], level), self.nets["vae"].denoise(noisy[crop])]


def _hist_quantiles(hist: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """Quantiles at ``probs`` (J,) of histograms ``hist`` (..., HIST_BINS) over +-HIST_HALF, linear within a bin;
    an empty histogram gives a standard normal's."""
    width = 2 * HIST_HALF / HIST_BINS
    total = hist.sum(-1, keepdim=True)
    cdf = hist.cumsum(-1) / total.clamp(min=1)
    p = probs.expand(*hist.shape[:-1], -1).contiguous()
    k = torch.searchsorted(cdf.contiguous(), p).clamp(max=HIST_BINS - 1)
    below = torch.where(k > 0, cdf.gather(-1, (k - 1).clamp(min=0)), torch.zeros_like(p))
    mass = cdf.gather(-1, k) - below
    frac = ((p - below) / mass.clamp(min=1e-12)).clamp(0, 1)
    q = -HIST_HALF + (k + frac) * width
    return torch.where(total > 0, q, normal_quantiles(probs).expand_as(q))


def smooth_bins(sums: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """Per-bin means (C, B, ...) of ``sums`` (C, B, ...) over ``n`` (C, B) pixels per bin, regularised along the
    bins: the minimiser of sum_k n_k |p_k - sums_k / n_k|^2 + L sum_k |p_k - p_k+1|^2 + P0 sum_k |p_k - P|^2, P the
    channel's pooled mean, L = ``AMPLITUDE_PRIOR_PIXELS``, P0 = ``AMPLITUDE_POOLED_PIXELS``. A well-filled bin keeps
    its own mean; an empty one at the end takes its neighbour's, one between two their mean."""
    c, b = n.shape
    extra = sums.shape[2:]
    flat = sums.reshape(c, b, -1)
    grand = flat.sum(1, keepdim=True) / n.sum(-1).clamp(min=1).view(c, 1, 1)
    lap = torch.zeros(b, b, dtype=sums.dtype, device=sums.device)
    k = torch.arange(b - 1, device=sums.device)
    lap[k, k] += 1
    lap[k + 1, k + 1] += 1
    lap[k, k + 1] -= 1
    lap[k + 1, k] -= 1
    a = torch.diag_embed(n + AMPLITUDE_POOLED_PIXELS) + AMPLITUDE_PRIOR_PIXELS * lap  # (C, B, B)
    return torch.linalg.solve(a, flat + AMPLITUDE_POOLED_PIXELS * grand).reshape(c, b, *extra)


def _all_reduce(count: torch.Tensor, sums: list[torch.Tensor]) -> torch.Tensor:
    """Sum ``count`` and every complex spectrum in ``sums`` (in place) over the ranks in one all-reduce (a no-op
    without a process group); returns the summed count."""
    if not (dist.is_available() and dist.is_initialized()):
        return count
    flat = torch.cat([count.view(1), *(torch.view_as_real(s).flatten() for s in sums)])
    dist.all_reduce(flat)
    offset = 1
    for s in sums:
        n = 2 * s.numel()
        s.copy_(torch.complex(*flat[offset : offset + n].view(*s.shape, 2).unbind(-1)))
        offset += n
    return flat[0]
