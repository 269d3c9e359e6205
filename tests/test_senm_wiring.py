"""SeNM-VAE wiring with known answers: which posterior feeds each pass in each domain, closed-form KLs through the
real loss, what synthesis reads, temperature and level channels. Each test fails on a mis-wired method."""

from __future__ import annotations

import math

import pytest
import torch

from raytrain.config import load_config
from raytrain.layout import to_image
from raytrain.methods import build_method
from raytrain.methods.senm.nets import (
    _colored,
    color_kernel,
    cross_spectrum,
    filter_field,
    intensity_bins,
    intensity_gain,
    intensity_map,
    match_kernel,
)

TINY_SENM = [
    "method.name=senm", "method.width=8", "method.growth=4", "method.z_dim=4", "method.zn_dim=2",
    "method.level_net_width=4", "method.disc_width=4", "method.blocks_per_scale=[1,1]", "data.paired.count=2",
    "method.adv_weight=0", "method.kl_anneal_steps=0",
]  # fmt: skip
GROUPS = 3  # blocks_per_scale [1, 1]: block, down, block


def senm(*extra, seed=0):
    torch.manual_seed(seed)
    return build_method(load_config(None, [*TINY_SENM, *extra]), torch.device("cpu"))


def pair(n=4, s=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, s, s, generator=g)
    return x, x + 0.1 * torch.randn(n, 1, s, s, generator=g)


def const_heads(heads, mean: float, logstd: float) -> None:
    """Every GaussianHead of ``heads`` outputs (mean, logstd) everywhere, whatever its input."""
    with torch.no_grad():
        for head in heads:
            for seq, v in ((head.mean, mean), (head.logstd, logstd)):
                seq[1].weight.zero_()
                seq[1].bias.fill_(v)


def kl_normal(m_q, s_q, m_p, s_p) -> float:
    """KL(N(m_q, e^{s_q}) || N(m_p, e^{s_p})), 1-D, s = log-std."""
    return s_p - s_q + (math.exp(2 * s_q) + (m_q - m_p) ** 2) / (2 * math.exp(2 * s_p)) - 0.5


def mark_posteriors(m) -> None:
    """q(z|x) says +3 and q(z|y) says -3, both with std ~0: the z that reaches the decoder names its posterior."""
    vae = m.nets["vae"]
    const_heads(vae.q_z_x, 3.0, -30.0)
    const_heads(vae.q_z_y, -3.0, -30.0)


def record_passes(m) -> list[dict]:
    """Hooks that log every decoding pass: the per-sample mean z of each group and whether z_n entered."""
    vae, passes = m.nets["vae"], []

    def on_z(g):
        def hook(_mod, inp, _out):
            if g == GROUPS - 1:  # decoding runs top-down: the top group opens a pass
                passes.append({"z": [], "noise": False})
            passes[-1]["z"].append(inp[0].mean(dim=(1, 2, 3)).detach())

        return hook

    def on_zn(_mod, _inp, _out):
        passes[-1]["noise"] = True

    for g in range(GROUPS):
        vae.proj_z[g].register_forward_hook(on_z(g))
        vae.proj_zn[g].register_forward_hook(on_zn)
    return passes


def from_x(p: dict) -> torch.Tensor:
    """Per sample: True where every group's z came from q(z|x) (+3), False where from q(z|y) (-3)."""
    zs = torch.stack(p["z"])
    assert torch.all(zs.abs() - 3 < 1e-4), "z came from neither posterior"
    assert torch.all((zs > 0) == (zs[0] > 0)), "one sample mixed posteriors across groups"
    return zs[0] > 0


# ------------------------------------------------------------------------------------ which posterior feeds what
def test_paper_mixture_routes_rec_y_through_q_z_x_and_rec_x_through_q_z_y():
    m = senm("method.mixture=paper")
    mark_posteriors(m)
    passes = record_passes(m)
    x, y = pair()
    m.domain_terms("paired", x, y)
    assert len(passes) == 2
    rec_x, rec_y = passes
    assert not rec_x["noise"] and not from_x(rec_x).any()  # p(x | z), z ~ q(z | y)
    assert rec_y["noise"] and from_x(rec_y).all()  # p(y | z, z_n), z ~ q(z | x): the path synthesis uses


def test_each_pass_reads_q_z_x_from_the_clean_encoder_and_q_z_y_from_the_noisy_one():
    """The heads see their own encoder's activations: enc_x's marked 0 and enc_y's marked 100 (by forward hooks), the
    top group's q(z|x) head reads 0 and q(z|y)'s reads 100 in every pass of a paired batch (the paper mixture's
    rec_y pass reads q(z|x) only, the rec_x pass both)."""
    m = senm("method.mixture=paper")
    vae = m.nets["vae"]
    vae.enc_x.register_forward_hook(lambda _m, _i, out: [torch.zeros_like(a) for a in out])
    vae.enc_y.register_forward_hook(lambda _m, _i, out: [torch.full_like(a, 100.0) for a in out])
    seen: dict[str, list[float]] = {"x": [], "y": []}
    top = GROUPS - 1  # decoded first: the decoder state is still 0 there
    vae.q_z_x[top].register_forward_pre_hook(lambda _m, inp: seen["x"].append(float(inp[0].mean())))
    vae.q_z_y[top].register_forward_pre_hook(lambda _m, inp: seen["y"].append(float(inp[0].mean())))
    m.domain_terms("paired", *pair())
    assert seen == {"x": [0.0, 0.0], "y": [100.0]}, seen  # rec_x: both heads; rec_y: q(z|x) only


@pytest.mark.parametrize("mixture", ["paper", "official"])
@pytest.mark.parametrize("domain, noise, want_x", [("source", False, True), ("target", True, False)])
def test_unpaired_domains_use_their_own_posterior(mixture, domain, noise, want_x):
    m = senm(f"method.mixture={mixture}")
    mark_posteriors(m)
    passes = record_passes(m)
    x, y = pair()
    m.domain_terms(domain, x if domain == "source" else None, y if domain == "target" else None)
    assert len(passes) == 1 and passes[0]["noise"] == noise
    assert bool(from_x(passes[0]).all()) == want_x and bool(from_x(passes[0]).any()) == want_x


def test_official_mixture_flips_a_p1_coin_per_sample_and_pass():
    m = senm("method.mixture=official", "method.mixture_p1=0.3")
    mark_posteriors(m)
    passes = record_passes(m)
    x, y = pair(n=600, s=16)
    m.domain_terms("paired", x, y)
    picks = [from_x(p).float() for p in passes]
    assert len(picks) == 2 and [p["noise"] for p in passes] == [False, True]
    for pick in picks:
        assert abs(float(pick.mean()) - 0.3) < 0.05  # the empirical mixture weight of q(z | x) is p1
    assert (picks[0] != picks[1]).float().mean() > 0.3  # each pass its own coin


# --------------------------------------------------------------------------------- KLs through the real loss
def kl_setup(m, zx=(0.2, -0.5), zy=(-0.4, 0.3), q_n=(0.5, -0.2), p_n=(-0.1, 0.4)):
    vae = m.nets["vae"]
    const_heads(vae.q_z_x, *zx)
    const_heads(vae.q_z_y, *zy)
    const_heads(vae.q_zn, *q_n)
    const_heads(vae.p_zn, *p_n)
    return GROUPS * kl_normal(*zy, *zx), GROUPS * kl_normal(*q_n, *p_n)


@pytest.mark.parametrize("mixture, z_passes", [("paper", 1), ("official", 2)])
def test_kl_terms_equal_their_closed_forms_for_constant_heads(mixture, z_passes):
    m = senm(f"method.mixture={mixture}")
    kl_z, kl_n = kl_setup(m)
    x, y = pair()
    t = m.domain_terms("paired", x, y)
    # KL(q(z|y) || q(z|x)) (not the reverse), summed over groups; paper: along the rec_x pass only,
    # official: klz_H + klz_L. KL(q(z_n|y,z) || p(z_n|z)) weighted 2 p1 = 1.
    assert torch.allclose(t["kl_z"], torch.full((4,), z_passes * kl_z), rtol=1e-5)
    assert torch.allclose(t["kl_n"], torch.full((4,), kl_n), rtol=1e-5)
    assert kl_z != pytest.approx(GROUPS * kl_normal(0.2, -0.5, -0.4, 0.3))  # the direction is checkable
    t = m.domain_terms("target", None, y)
    assert torch.allclose(t["kl_n"], torch.full((4,), kl_n), rtol=1e-5) and "kl_z" not in t


@pytest.mark.parametrize("key, base, raised", [
    ("kl_noise_weight", 1e-2, 3e-2),
    ("kl_z_weight", 1e-7, 0.5),
])  # fmt: skip
def test_raising_a_kl_weight_raises_the_loss_by_exactly_that_term(key, base, raised):
    x, y = pair()
    losses = []
    for w in (base, raised):
        m = senm(f"method.{key}={w}")
        kl_z, kl_n = kl_setup(m)
        torch.manual_seed(5)
        losses.append(m.train_step({"paired": {"clean": x, "noisy": y}}, 1).losses["loss"])
    term = kl_n if key == "kl_noise_weight" else kl_z
    assert losses[1] - losses[0] == pytest.approx((raised - base) * term, rel=1e-3)
    assert losses[1] > losses[0]


def test_paper_mixture_weights_terms_by_the_mixture_probabilities():
    x, y = pair()
    half, skew = senm("method.mixture_p1=0.5"), senm("method.mixture_p1=0.8")
    kl_setup(half), kl_setup(skew)
    torch.manual_seed(3)
    a = half.domain_terms("paired", x, y)
    torch.manual_seed(3)
    b = skew.domain_terms("paired", x, y)
    assert torch.allclose(b["kl_n"], a["kl_n"] * 1.6, rtol=1e-5)  # 2 p1
    assert torch.allclose(b["rec_x"], a["rec_x"] * 0.4, rtol=1e-5)  # 2 p2: rec_x is the q(z|y) pass
    torch.manual_seed(3)
    src = skew.domain_terms("source", x, None)
    torch.manual_seed(3)
    tgt = skew.domain_terms("target", None, y)
    torch.manual_seed(3)
    src_half, tgt_half = half.domain_terms("source", x, None), None
    torch.manual_seed(3)
    tgt_half = half.domain_terms("target", None, y)
    assert torch.allclose(src["rec_x"], src_half["rec_x"] * 1.6, rtol=1e-5)  # Loss_s: p1
    assert torch.allclose(tgt["kl_n"], tgt_half["kl_n"] * 0.4, rtol=1e-5)  # Loss_t: p2


# --------------------------------------------------------------------------------------------------- synthesis
def live(m):
    """Give the zero-initialised convs weights so that every latent reaches the output."""
    with torch.no_grad():
        for p in m.nets["vae"].parameters():
            if not p.any():
                p.normal_(0, 0.05)
    m.nets["levels"].add(torch.full((8,), 0.05))
    m.train(False)
    return m


def synth(m, x, seed=7, **kw):
    torch.manual_seed(seed)
    return m.synthesize(x, torch.full((x.shape[0], 1, 1, 1), 0.05), **kw)


def perturb(module):
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.1)


@pytest.mark.parametrize("mode", ["full", "residual"])
@pytest.mark.parametrize("net, matters", [
    ("enc_x", True), ("q_z_x", True), ("p_zn", True), ("dec", True),
    ("enc_y", False), ("q_z_y", False), ("enc_n", False), ("q_zn", False),
])  # fmt: skip
def test_synthesis_reads_q_z_x_and_the_prior_only(mode, net, matters):
    m = live(senm(f"method.synthesis={mode}"))
    x, _ = pair(n=2)
    before = synth(m, x)
    perturb(getattr(m.nets["vae"], net))
    changed = not torch.allclose(synth(m, x), before, atol=1e-6)
    assert changed == matters


def test_residual_synthesis_adds_only_what_z_n_drives_to_the_real_clean_image():
    m = live(senm("method.synthesis=residual"))
    x, _ = pair(n=2)
    assert torch.equal(synth(m, x, temperature=0.0), x)  # z_n at the prior means drives nothing
    noisy = synth(m, x, seed=3)
    torch.manual_seed(3)
    a, b = m.nets["vae"].noise_part(x, torch.full((2, 1, 1, 1), 0.05))
    assert torch.allclose(noisy, x + a - b, atol=1e-6) and (noisy - x).abs().max() > 1e-3


def test_temperature_scales_the_noise_and_zero_with_mean_content_is_deterministic():
    for mode in ("full", "residual"):
        m = live(senm(f"method.synthesis={mode}", "method.content=mean"))
        x, _ = pair(n=2, s=32)
        ref = synth(m, x, temperature=0.0)
        spread = [float((synth(m, x, seed=s, temperature=t) - ref).std()) for s, t in ((1, 0.5), (2, 1.0), (3, 2.0))]
        assert spread[0] < spread[1] < spread[2], (mode, spread)
        assert torch.equal(synth(m, x, seed=1, temperature=0.0), synth(m, x, seed=2, temperature=0.0))
    m = live(senm("method.synthesis=full", "method.content=sample"))
    assert not torch.equal(synth(m, x, seed=1, temperature=0.0), synth(m, x, seed=2, temperature=0.0))


def test_normalize_shifts_each_image_mean_to_the_clean_mean():
    m = live(senm("method.synthesis=full", "method.normalize=true"))
    x, _ = pair(n=2, s=32)
    out = synth(m, x)
    assert torch.allclose(out.mean(dim=(2, 3)), x.mean(dim=(2, 3)), atol=1e-5)


def test_validation_reports_the_content_floor_and_the_z_n_part():
    m = live(senm())
    x, y = pair(n=1, s=32)
    row = m.evaluate([(to_image(x), to_image(y))], "cpu")[0]
    torch.manual_seed(0)
    level = torch.full((1, 1, 1, 1), row["noise_std_real"] / 255)
    _, mean = m.nets["vae"].noise_part(x, level)
    assert row["content_floor"] == pytest.approx(float((mean - x).std()) * 255, rel=1e-4)  # deterministic: means
    assert row["zn_std"] > 0 and {"content_floor", "zn_std"} <= set(m.val_keys)


# ------------------------------------------------------------------------------------------------ level channel
def record_levels(m) -> list[torch.Tensor]:
    vae, seen = m.nets["vae"], []
    orig = vae._cond

    def cond(h, level):
        seen.append(level)
        return orig(h, level)

    vae._cond = cond
    return seen


def test_level_channel_is_the_true_std_on_pairs_and_the_detached_prediction_on_targets():
    m = senm()
    x, y = pair()
    seen = record_levels(m)
    m.domain_terms("paired", x, y)
    assert seen and all(torch.equal(lv, (y - x).std(dim=(1, 2, 3), keepdim=True)) for lv in seen)
    seen.clear()
    m.domain_terms("target", None, y)
    pred = m.nets["level_net"](y)
    assert seen and all(torch.allclose(lv, pred) and not lv.requires_grad for lv in seen)
    seen.clear()
    m.train(False)
    m.synthesize(x, torch.full((4, 1, 1, 1), 15 / 255))
    assert seen and all(torch.allclose(lv, torch.full((4, 1, 1, 1), 15 / 255)) for lv in seen)


@pytest.mark.parametrize("modulation", [True, False])
def test_level_modulation_scales_what_z_n_adds_to_the_decoder_by_the_level(modulation):
    """With the level channel off (so z_n's draws do not depend on the level), what reaches the top group's decoder
    block is z's part plus z_n's, the latter times level / (10/255) under ``level_modulation``; at level 0 z_n then
    drives nothing at all."""
    m = senm(f"method.level_modulation={str(modulation).lower()}", "method.level_conditioning=false")
    for head in m.nets["vae"].proj_zn:  # zero-initialised: give z_n a path into the decoder
        torch.nn.init.normal_(head.weight)
    m.train(False)
    x, _ = pair(n=1, s=16)
    seen = []
    m.nets["vae"].dec[GROUPS - 1].register_forward_hook(lambda _mod, inp, _out: seen.append(inp[0].detach()))
    outs = {}
    for lv in (0.0, 10 / 255, 20 / 255):
        torch.manual_seed(3)
        noisy, mean = m.nets["vae"].noise_part(x, torch.full((1, 1, 1, 1), lv))
        outs[lv] = (seen[-2] - seen[-1], noisy - mean)  # (z_n's part at the top block, the noise z_n drives)
    if modulation:
        assert torch.equal(outs[0.0][1], torch.zeros_like(x))
        assert torch.allclose(outs[20 / 255][0], 2 * outs[10 / 255][0], atol=1e-5)
    else:
        assert outs[0.0][1].abs().max() > 0 and torch.allclose(outs[20 / 255][0], outs[10 / 255][0], atol=1e-6)


def test_level_prior_keeps_true_levels_and_only_a_trusted_level_nets_predictions():
    from raytrain.methods.senm.levels import LevelStats

    s = LevelStats(8, tolerance=0.2, momentum=1.0)
    s.add(torch.tensor([-0.3, 0.9]), predicted=True)  # no paired error measured yet: not trusted, not kept
    s.add(torch.tensor([0.10, 0.12]), error=torch.tensor([0.05, 0.05]))  # error 0.05 > 0.2 * 0.11
    s.add(torch.tensor([-0.3, 0.9]), predicted=True)
    assert sorted(s.prior().tolist()) == pytest.approx([0.10, 0.12])
    s.add(torch.tensor([0.10, 0.12]), error=torch.tensor([0.01, 0.01]))  # now 0.01 < 0.022: trusted
    s.add(torch.tensor([-0.3, 0.2]), predicted=True)
    assert sorted(s.prior().tolist()) == pytest.approx([0.0, 0.10, 0.10, 0.12, 0.12, 0.2])  # clamped at 0
    assert s.range() == pytest.approx((0.0, 0.2))
    summ = s.summary()
    assert summ["level_paired_max"] == pytest.approx(0.12 * 255) and summ["level_predictions"] == 2
    assert summ["level_paired_mean"] == pytest.approx(0.11 * 255) and summ["level_prior_min"] == 0.0
    with pytest.raises(ValueError, match="seen no noise levels"):
        LevelStats(4).sample(1)


def test_the_level_nets_running_error_and_mean_level_are_exponential_averages():
    """momentum k: error <- (1 - k) error + k err (the first batch sets it); the mean paired level the same way."""
    from raytrain.methods.senm.levels import LevelStats

    s = LevelStats(8, tolerance=0.2, momentum=0.25)
    s.add(torch.tensor([0.10, 0.12]), error=torch.tensor([0.04, 0.06]))
    assert float(s.error) == pytest.approx(0.05) and float(s.level_mean) == pytest.approx(0.11)
    s.add(torch.tensor([0.20, 0.22]), error=torch.tensor([0.01, 0.01]))
    assert float(s.error) == pytest.approx(0.75 * 0.05 + 0.25 * 0.01)  # 0.04
    assert float(s.level_mean) == pytest.approx(0.75 * 0.11 + 0.25 * 0.21)  # 0.135


# ---------------------------------------------------------------------------------------------- auto temperature
def test_auto_temperature_matches_the_training_pairs_noise_rms():
    m = live(senm())  # temperature: auto (the default)
    assert m.m.temperature == "auto" and m.temperature == 1.0
    assert m.calibrate_temperature() is None and m.temperature == 1.0  # no training pairs seen yet: kept
    g = torch.Generator().manual_seed(4)
    for _ in range(3):  # what training steps would have recorded: real pairs only
        x = torch.rand(4, 1, 32, 32, generator=g)
        m._recent_pairs.append((x, x + 0.08 * torch.randn(4, 1, 32, 32, generator=g)))
    m.domain_terms("target", None, torch.rand(4, 1, 32, 32))  # unpaired batches are not calibration data
    assert len(m._recent_pairs) == 3
    t = m.calibrate_temperature()
    assert t is not None and t == m.temperature and t != 1.0
    real = torch.cat([(y - x).flatten() for x, y in m._recent_pairs]).pow(2).mean().sqrt()
    torch.manual_seed(9)
    synth = torch.cat([(m.synthesize(x, (y - x).std(dim=(1, 2, 3), keepdim=True)) - x).flatten()
                       for x, y in m._recent_pairs]).pow(2).mean().sqrt()  # fmt: skip
    assert float(synth / real) == pytest.approx(1.0, abs=0.1)
    fixed = live(senm("method.temperature=1.0"))
    fixed._recent_pairs.extend(m._recent_pairs)
    fixed.before_validation()  # a fixed temperature is never recalibrated
    assert fixed.temperature == 1.0


# ------------------------------------------------------------------------- fitted prior and likelihood colouring
def colored_field(n=64, s=32, seed=0):
    """Two channels: the first spatially correlated, the second half a copy of the first plus its own white part."""
    kernel = torch.zeros(2, 2, 3, 3)
    kernel[0, 0] = torch.tensor([[0.0, 0.2, 0.0], [0.3, 1.0, 0.3], [0.0, 0.2, 0.0]])
    kernel[1, 0, 1, 1], kernel[1, 1, 1, 1] = 0.5, 0.8
    torch.manual_seed(seed)
    return _colored(torch.Size((n, 2, s, s)), kernel, None, torch.zeros(1)), kernel


def second_order(a):
    """std of both channels, their correlation, the first channel's lag-1 horizontal and vertical correlations, the
    second channel's horizontal one."""
    c = lambda u, v: float(((u - u.mean()) * (v - v.mean())).mean() / (u.std() * v.std()))  # noqa: E731
    return [float(a[:, 0].std()), float(a[:, 1].std()), c(a[:, 0], a[:, 1]), c(a[:, 0, :, 1:], a[:, 0, :, :-1]),
            c(a[:, 0, 1:], a[:, 0, :-1]), c(a[:, 1, :, 1:], a[:, 1, :, :-1])]  # fmt: skip


def test_color_kernel_reproduces_a_known_cross_spectrum():
    field, kernel = colored_field()
    want = second_order(field)
    assert want[2] > 0.4 and want[3] > 0.4 and want[4] > 0.25 and abs(want[5]) < 0.05  # the field is what it says
    fitted = color_kernel(cross_spectrum(field), field.shape[0], 5)
    torch.manual_seed(1)
    got = second_order(_colored(torch.Size((64, 2, 32, 32)), fitted, None, torch.zeros(1)))
    assert got == pytest.approx(want, abs=0.04)
    white = color_kernel(cross_spectrum(torch.randn(64, 2, 32, 32)), 64, 5)  # white in: ~ the identity out
    assert torch.allclose(white[:, :, 2, 2], torch.eye(2), atol=0.05) and white[:, :, [0, 1, 3, 4]].abs().max() < 0.05


@pytest.mark.parametrize("prior, matters", [("diagonal", False), ("colored", True)])
def test_only_the_colored_prior_reads_the_fitted_kernels(prior, matters):
    m = live(senm(f"method.prior={prior}", "method.synthesis=residual"))
    x, _ = pair(n=2, s=32)
    before = synth(m, x)
    with torch.no_grad():
        m.nets["vae"].zn_color[:, :, :, 1, 2] += 0.7  # a horizontal neighbour joins every draw
    assert (not torch.allclose(synth(m, x), before, atol=1e-6)) == matters


def test_likelihood_sample_adds_the_fitted_noise_at_the_level_and_mean_adds_none():
    x, _ = pair(n=2, s=32)
    outs, high = {}, {}
    for lik in ("mean", "sample"):
        m = live(senm(f"method.likelihood={lik}", "method.synthesis=residual"))
        with torch.no_grad():
            m.nets["vae"].y_color[0, 0, 2, 2] = 0.5  # white likelihood noise of std 0.5 x level
        outs[lik] = synth(m, x, seed=5)
        torch.manual_seed(5)
        high[lik] = m.synthesize(x, torch.full((2, 1, 1, 1), 0.1))
        assert torch.equal(synth(m, x, seed=5, temperature=0.0), x)  # T = 0: no draw at all, the prior means
    extra = outs["sample"] - outs["mean"]
    assert float(extra.std()) == pytest.approx(0.5 * 0.05, rel=0.1)  # synth() draws at level 0.05
    assert float((high["sample"] - high["mean"]).std()) == pytest.approx(0.5 * 0.1, rel=0.1)  # it scales with it
    assert float((extra[..., 1:] * extra[..., :-1]).mean() / extra.var()) == pytest.approx(0.0, abs=0.1)


def test_fit_colors_routes_the_unexplained_noise_to_the_likelihood_and_each_group_to_its_prior():
    m = live(senm("method.prior=colored", "method.likelihood=sample"))
    assert m.fit_colors() is False  # no training pairs yet: the identity / zero kernels stay
    assert m.nets["vae"].y_color.abs().sum() == 0 and m.nets["vae"].zn_color[:, 0, 0, 2, 2].eq(1).all()
    field, _ = colored_field(n=8)
    noise = 2.0 * field[:, :1]
    explained = field[:, :1]  # the decoder explains half the noise's amplitude: 3/4 of its power is left
    groups = [(g + 2.0) * field for g in range(GROUPS)]  # told apart by their size
    calls = []

    def fake_fit(x, y):
        calls.append((x, y))
        return noise, explained, groups

    m.nets["vae"].posterior_fit = fake_fit
    x, y = pair(n=8, s=32)
    m._recent_pairs.append((x, y))
    assert m.fit_colors() is True and calls[0][0] is x and calls[0][1] is y  # (clean, noisy), in that order
    vae = m.nets["vae"]
    assert torch.allclose(vae.y_color, color_kernel(cross_spectrum(noise) - cross_spectrum(explained), 8, 5))
    assert torch.allclose(vae.y_color, color_kernel(cross_spectrum(3**0.5 * field[:, :1]), 8, 5), atol=1e-5)
    for g in range(GROUPS):
        assert torch.allclose(vae.zn_color[g], color_kernel(cross_spectrum(groups[g]), 8, 5)), g


def test_posterior_fit_reads_the_pair_through_q_z_x_and_q_z_n_and_standardises_by_the_prior():
    x, y = pair(n=2, s=32)

    def fit(net=None):
        m = live(senm())
        if net:
            perturb(getattr(m.nets["vae"], net))
        torch.manual_seed(0)
        return m.nets["vae"].posterior_fit(x, y)

    noise, explained, fields = fit()
    level = (y - x).std(dim=(1, 2, 3), keepdim=True)
    assert torch.allclose(noise, (y - x) / level) and len(fields) == GROUPS and fields[0].shape[1] == 2  # zn_dim
    for net, explained_matters, fields_matter in (
        ("enc_x", True, True), ("enc_n", True, True), ("q_zn", True, True), ("p_zn", True, True),
        ("enc_y", False, False), ("q_z_y", False, False),
    ):  # fmt: skip
        _, e2, f2 = fit(net)
        assert (not torch.allclose(explained, e2, atol=1e-6)) == explained_matters, net
        assert any(not torch.allclose(a, b, atol=1e-6) for a, b in zip(fields, f2, strict=True)) == fields_matter, net
    m = live(senm())
    vae = m.nets["vae"]
    torch.manual_seed(0)
    out = vae.top_down(vae.enc_x(x), None, vae.enc_n(y), level, noise="posterior", content_temperature=0.0)[0]
    mean = vae.top_down(vae.enc_x(x), None, level=level, noise="prior", temperature=0.0, content_temperature=0.0)[0]
    assert torch.allclose(explained, (out - mean) / level, atol=1e-5)  # the same draws: seeded alike
    # the standardisation by the prior, known values: q(z_n) says 0.5 (std ~0), p(z_n) says -0.1 with log-std 0.4
    const_heads(vae.q_zn, 0.5, -30.0)
    const_heads(vae.p_zn, -0.1, 0.4)
    for f in vae.posterior_fit(x, y)[2]:
        assert torch.allclose(f, torch.full_like(f, (0.5 + 0.1) / math.exp(0.4)), atol=1e-5)  # 0.4022


def test_fit_colors_all_reduces_its_spectra_across_ranks(tmp_path):
    """The distributed path (complex spectra reduced as real views, the pair count) on a one-rank gloo group: the same
    kernels as without a process group."""
    import torch.distributed as dist

    x, y = pair(n=4, s=32)
    plain = live(senm("method.prior=colored", "method.likelihood=sample"))
    plain._recent_pairs.append((x, y))
    torch.manual_seed(0)
    plain.fit_colors()
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        ranked = live(senm("method.prior=colored", "method.likelihood=sample"))
        ranked._recent_pairs.append((x, y))
        torch.manual_seed(0)
        assert ranked.fit_colors() is True
    finally:
        dist.destroy_process_group()
    for name in ("zn_color", "y_color"):
        a, b = getattr(plain.nets["vae"], name), getattr(ranked.nets["vae"], name)
        assert torch.allclose(a, b, atol=1e-6) and a.abs().sum() > 0, name


# ------------------------------------------------------------------------------------------- spectrum: matched
def lag1(a):
    """Lag-1 correlation of a (N, 1, H, W) field along its rows and along its columns."""
    a = a - a.mean()
    return [
        float((a[..., :, 1:] * a[..., :, :-1]).mean() / a.var()),
        float((a[..., 1:, :] * a[..., :-1, :]).mean() / a.var()),
    ]


def test_match_kernel_gives_a_field_the_target_spectrums_shape_at_its_own_power():
    field, _ = colored_field(n=64)  # the target: the first channel's correlation (0.5 / 0.33 at lag 1)
    target = field[:, :1]
    torch.manual_seed(3)
    source = 3.0 * torch.randn(64, 1, 32, 32)  # white, 9 times the power
    h = match_kernel(cross_spectrum(target) / 64, cross_spectrum(source) / 64, 5)
    torch.manual_seed(4)
    out = filter_field(3.0 * torch.randn(64, 1, 32, 32), h)
    assert lag1(out) == pytest.approx(lag1(target), abs=0.04) and lag1(target)[0] > 0.4
    assert float(out.std()) == pytest.approx(3.0, rel=0.05)  # the source's power, not the target's
    same = match_kernel(cross_spectrum(target) / 64, cross_spectrum(target) / 64, 5)  # already the shape: identity
    assert float(same[0, 0, 2, 2]) == pytest.approx(1.0, abs=0.02) and same[0, 0, [0, 1, 3, 4]].abs().max() < 0.02
    # two channels (cross-spectral): the target's correlation between channels too
    torch.manual_seed(5)
    h2 = match_kernel(cross_spectrum(field) / 64, cross_spectrum(torch.randn(64, 2, 32, 32)) / 64, 5)
    torch.manual_seed(6)
    got = second_order(filter_field(torch.randn(64, 2, 32, 32), h2))
    want = second_order(field)
    assert got[2:] == pytest.approx(want[2:], abs=0.05) and want[2] > 0.4


def test_filter_field_is_a_same_size_convolution_reflected_at_the_borders():
    k = torch.zeros(1, 1, 3, 3)
    k[0, 0, 1, 2] = 1.0  # a true convolution with this kernel shifts the field one pixel to the right
    f = torch.arange(20.0).view(1, 1, 4, 5)
    out = filter_field(f, k)
    assert out.shape == f.shape and torch.equal(out[..., 1:], f[..., :-1]) and torch.equal(out[..., 0], f[..., 1])
    assert filter_field(torch.ones(1, 1, 1, 1), k).item() == 1.0  # too small to reflect: replicated


def test_spectrum_matched_filters_the_whole_synthetic_noise_and_model_builds_no_filter():
    assert not hasattr(live(senm()).nets["vae"], "noise_filter")  # the default: old checkpoints load as they are
    m = live(senm("method.spectrum=matched", "method.likelihood=sample", "method.synthesis=residual"))
    vae = m.nets["vae"]
    assert "noise_filter" in vae.state_dict() and vae.noise_filter[0, 0, 2, 2] == 1  # in checkpoints; identity
    x, _ = pair(n=2, s=32)
    with torch.no_grad():
        vae.y_color[0, 0, 2, 2] = 0.5  # the likelihood's draw is part of what is filtered
        vae.noise_filter.zero_()
        vae.noise_filter[0, 0, 2, 1:4] = torch.tensor([0.5, 0.7, 0.5])  # a horizontal blur
    raw, got = synth(m, x, matched=False), synth(m, x)
    assert torch.allclose(got - x, filter_field(raw - x, vae.noise_filter), atol=1e-6)
    assert lag1(got - x)[0] > lag1(raw - x)[0] + 0.3 and abs(lag1(got - x)[1] - lag1(raw - x)[1]) < 0.1


def fits_run(m, *names: str) -> list[str]:
    """Which of the ex-post fits ``names`` ``m.before_validation()`` runs, in its order (each still runs)."""
    calls = []
    for name in names:
        fn = getattr(m, name)
        setattr(m, name, lambda fn=fn, name=name: calls.append(name) or fn())
    m.before_validation()
    return calls


def test_fit_spectrum_matches_the_real_noise_shape_and_keeps_the_temperatures_level():
    m = live(senm("method.spectrum=matched", "method.prior=colored", "method.likelihood=sample"))
    assert m.fit_spectrum() is False and m.nets["vae"].noise_filter[0, 0, 2, 2] == 1  # no pairs yet: kept
    field, _ = colored_field(n=24, seed=2)
    x = torch.rand(24, 1, 32, 32, generator=torch.Generator().manual_seed(8))
    for i in range(3):  # real noise at 0.04 x a field correlated along the rows (0.5) and the columns (0.33)
        m._recent_pairs.append((x[8 * i : 8 * i + 8], x[8 * i : 8 * i + 8] + 0.04 * field[8 * i : 8 * i + 8, :1]))
    fits = ("fit_colors", "calibrate_temperature", "fit_spectrum")  # the order of the ex-post fits
    assert fits_run(m, *fits) == ["fit_colors", "calibrate_temperature", "fit_spectrum"]
    m.m.prior, m.m.likelihood = "diagonal", "mean"  # the paper's white prior and decoder mean: H does all the shaping
    m.calibrate_temperature()
    m.fit_spectrum()
    level = torch.full((24, 1, 1, 1), 0.04)
    torch.manual_seed(11)
    raw = m.synthesize(x, level, matched=False) - x
    torch.manual_seed(11)
    got = m.synthesize(x, level) - x
    assert lag1(got) == pytest.approx(lag1(field[:, :1]), abs=0.05), (lag1(raw), lag1(got))  # 0.48 / 0.35 (0.47 / 0.32)
    assert abs(lag1(raw)[0] - lag1(field[:, :1])[0]) > 0.2  # unfiltered: 0.17 / -0.10
    assert float(got.std() / raw.std()) == pytest.approx(1.0, abs=0.05)  # the shape changes, not the level
    assert float(got.std() / 0.04) == pytest.approx(1.0, abs=0.15)  # the temperature's level: the real one's
    first = m.nets["vae"].noise_filter.clone()
    m.fit_spectrum()  # the next validation's fit reads the unfiltered synthesis again: the same filter, not identity
    assert torch.allclose(m.nets["vae"].noise_filter, first, atol=0.05) and first[0, 0, 2, [1, 3]].min() > 0.1


def test_intensity_gain_interpolates_between_bin_centres_per_channel():
    gain = torch.tensor([[1.0, 2.0, 4.0, 8.0], [0.5, 0.5, 0.5, 0.5]])  # 4 bins: centres 0.125, 0.375, 0.625, 0.875
    clean = torch.tensor([0.0, 0.125, 0.25, 0.5, 0.875, 1.0]).view(1, 1, 1, 6).repeat(1, 2, 1, 1)
    got = intensity_gain(clean, gain)
    assert got[0, 0, 0].tolist() == pytest.approx([1.0, 1.0, 1.5, 3.0, 8.0, 8.0])  # constant beyond the outer centres
    assert torch.all(got[0, 1] == 0.5)  # each channel its own gains
    assert intensity_bins(clean, 4)[0, 0, 0].tolist() == [0, 0, 1, 2, 3, 3]


def test_amplitude_matched_scales_the_synthetic_noise_by_the_gain_at_each_clean_value():
    assert not hasattr(live(senm()).nets["vae"], "noise_gain")  # the default: old checkpoints load as they are
    m = live(senm("method.amplitude=matched", "method.amplitude_bins=4"))
    vae = m.nets["vae"]
    assert "noise_gain" in vae.state_dict() and torch.all(vae.noise_gain == 1)  # in checkpoints; 1 until fitted
    x, _ = pair(n=2, s=32)
    with torch.no_grad():
        vae.noise_gain.copy_(torch.tensor([[3.0, 1.0, 1.0, 0.5]]))
    raw, got = synth(m, x, amplitude=False), synth(m, x)
    assert torch.allclose(got - x, intensity_gain(x, vae.noise_gain) * (raw - x), atol=1e-6)
    dark, bright = x < 0.125, x > 0.875
    assert ((got - x)[dark].std() / (raw - x)[dark].std()).item() == pytest.approx(3.0, rel=1e-4)
    assert ((got - x)[bright].std() / (raw - x)[bright].std()).item() == pytest.approx(0.5, rel=1e-4)


def test_fit_amplitude_gives_the_synthetic_noise_the_real_noises_profile_over_the_clean_value():
    """Real noise 3 times as strong in the darks as in the highlights (std 0.09 (1 - x) + 0.03); the decoder's is
    flat. After the fit the synthetic noise's std per intensity bin is the real one's; the fit reads the synthesis
    before the gain (a second fit gives the same gain), and runs last of the ex-post fits."""
    m = live(senm("method.amplitude=matched", "method.spectrum=matched", "method.likelihood=sample"))
    assert m.fit_amplitude() is False and torch.all(m.nets["vae"].noise_gain == 1)  # no pairs yet: kept
    g = torch.Generator().manual_seed(8)
    x = torch.rand(48, 1, 32, 32, generator=g) * 0.8 + 0.1  # away from the clip
    std = lambda c: 0.09 * (1 - c) + 0.03  # noqa: E731
    y = x + std(x) * torch.randn(x.shape, generator=g)
    for i in range(6):
        m._recent_pairs.append((x[8 * i : 8 * i + 8], y[8 * i : 8 * i + 8]))
    fits = ("calibrate_temperature", "fit_spectrum", "fit_amplitude")  # the order of the ex-post fits
    assert fits_run(m, *fits) == ["calibrate_temperature", "fit_spectrum", "fit_amplitude"]
    level = (y - x).std(dim=(1, 2, 3), keepdim=True)
    torch.manual_seed(11)
    raw = m.synthesize(x, level, amplitude=False) - x
    torch.manual_seed(11)
    got = m.synthesize(x, level) - x
    bins = intensity_bins(x, 8)
    ratio = lambda n, k: float(n[bins == k].std() / (y - x)[bins == k].std())  # noqa: E731
    fitted, flat = [ratio(got, k) for k in range(1, 7)], [ratio(raw, k) for k in range(1, 7)]
    assert fitted == pytest.approx([1.0] * 6, abs=0.12), (fitted, flat)
    assert flat[0] < 0.8 and flat[-1] > 1.3, flat  # the decoder's own noise: far from the profile
    first = m.nets["vae"].noise_gain.clone()
    assert first[0, 1] > 2 * first[0, 6]
    m.fit_amplitude()
    assert torch.allclose(m.nets["vae"].noise_gain, first, rtol=0.05)


def test_fit_amplitude_gives_a_bin_without_pixels_its_neighbours_gain_and_fits_through_the_clip():
    """Pairs whose clean values never reach the top half: the empty bins take bin 1's gain (the trend continued
    flat), not the pooled one, 0 or a blow-up.
    Clipped real noise at the black level: the synthetic side is scored clipped too, so the gain there is not
    pushed past what a written image can show (bin 0's gain stays within the range)."""
    m = live(senm("method.amplitude=matched", "method.amplitude_bins=4"))
    g = torch.Generator().manual_seed(3)
    x = torch.rand(16, 1, 32, 32, generator=g) * 0.5
    y = (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    m._recent_pairs.extend([(x[:8], y[:8]), (x[8:], y[8:])])
    m.calibrate_temperature()
    assert m.fit_amplitude() is True
    gain = m.nets["vae"].noise_gain[0]
    assert gain[2:].tolist() == pytest.approx([float(gain[1])] * 2, rel=1e-3) and 0.25 <= float(gain.min())
    assert float(gain.max()) <= 4.0


def test_intensity_map_sends_each_bins_quantiles_to_its_targets_and_blends_between_centres():
    """Two bins (centres 0.25, 0.75), 3 knots: bin 0 maps (-1, 0, 1) -> (-1, 1, 3) (2z + 1), bin 1 (-2, 0, 2) ->
    (-1, 0, 1) (z / 2); channel 2 the identity. Between knots linear, beyond the outer ones the chord's slope from the
    middle knot; between centres the two maps blended."""
    src = torch.tensor([[[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0]], [[-1.0, 0.0, 1.0], [-1.0, 0.0, 1.0]]])
    dst = torch.tensor([[[-1.0, 1.0, 3.0], [-1.0, 0.0, 1.0]], [[-1.0, 0.0, 1.0], [-1.0, 0.0, 1.0]]])
    z = torch.tensor([-3.0, -0.5, 0.5, 4.0])
    for c, want in ((0.1, 2 * z + 1), (0.25, 2 * z + 1), (0.75, z / 2), (1.0, z / 2), (0.5, (2 * z + 1 + z / 2) / 2)):
        clean = torch.full((1, 2, 1, 4), c)
        got = intensity_map(clean, z.view(1, 1, 1, 4).repeat(1, 2, 1, 1), src, dst)
        assert got[0, 0, 0].tolist() == pytest.approx(want.tolist()), c
        assert got[0, 1, 0].tolist() == pytest.approx(z.tolist())  # each channel its own map
    skew = torch.tensor([[[-1.0, 0.0, 1.0]]]), torch.tensor([[[-3.0, 0.0, 1.0]]])  # a long low tail
    got = intensity_map(torch.full((1, 1, 1, 4), 0.5), torch.tensor([-2.0, -0.5, 0.5, 2.0]).view(1, 1, 1, 4), *skew)
    assert got.flatten().tolist() == pytest.approx([-6.0, -1.5, 0.5, 2.0])


def test_amplitude_marginal_sends_the_synthetic_noise_through_the_map_at_each_clean_value():
    assert not hasattr(live(senm()).nets["vae"], "noise_quantiles")  # the default: old checkpoints load as they are
    m = live(senm("method.amplitude=marginal", "method.amplitude_bins=4"))
    vae = m.nets["vae"]
    assert "noise_quantiles" in vae.state_dict() and torch.equal(vae.noise_quantiles[0], vae.noise_quantiles[1])
    assert torch.all(vae.noise_gain == 1)  # the gain first (1 here), then the map
    x, _ = pair(n=2, s=32)
    raw = synth(m, x, amplitude=False)
    assert torch.allclose(synth(m, x), raw, atol=1e-5)  # the identity until fitted
    with torch.no_grad():
        vae.noise_gain.fill_(2.0)
    assert torch.allclose(synth(m, x) - x, 2 * (raw - x), atol=1e-5)  # the gain, then the (identity) map
    assert torch.allclose(synth(m, x, amplitude="gain"), synth(m, x), atol=1e-5)
    with torch.no_grad():
        vae.noise_gain.fill_(1.0)
    with torch.no_grad():  # dark bin: 3 z - 0.5 (in units of the level 0.05); brightest bin: z / 2
        vae.noise_quantiles[1, 0, 0] = 3 * vae.noise_quantiles[0, 0, 0] - 0.5
        vae.noise_quantiles[1, 0, 3] = vae.noise_quantiles[0, 0, 3] / 2
    got = synth(m, x)
    q = vae.noise_quantiles
    assert torch.allclose(got - x, 0.05 * intensity_map(x, (raw - x) / 0.05, q[0], q[1]), atol=1e-6)
    dark, bright = x < 0.125, x > 0.875
    assert ((got - x)[dark] - (3 * (raw - x)[dark] - 0.025)).abs().max() < 1e-5
    assert ((got - x)[bright] - (raw - x)[bright] / 2).abs().max() < 1e-5


def moments(v: torch.Tensor) -> tuple[float, float, float]:
    """Mean, std and skewness."""
    mu, sd = v.mean(), v.std()
    return float(mu), float(sd), float(((v - mu) ** 3).mean() / sd**3)


def test_fit_marginal_gives_the_synthetic_noise_the_real_noises_mean_std_and_skew_per_clean_value():
    """Real noise as a tone curve leaves it: in the darks (x < 0.5) skewed low (a negated lognormal, skewness -1.75),
    biased (mean -0.01) and strong (std 0.08); in the highlights symmetric, unbiased and weak (0.03). The decoder's
    is symmetric and flat. After the fit the synthetic noise's mean, std and skew per half are the real ones'; the
    fit reads the synthesis before the map (a second fit gives the same maps), and runs last of the ex-post fits."""
    m = live(senm("method.amplitude=marginal", "method.spectrum=matched", "method.likelihood=sample"))
    q0 = m.nets["vae"].noise_quantiles.clone()
    assert m.fit_marginal() is False and torch.equal(m.nets["vae"].noise_quantiles, q0)  # no pairs yet: kept
    g = torch.Generator().manual_seed(8)
    x = torch.rand(64, 1, 32, 32, generator=g) * 0.8 + 0.1  # away from the clip
    e = torch.randn(x.shape, generator=g)
    skewed = -(torch.exp(0.5 * e) - math.exp(0.125)) / math.sqrt((math.exp(0.25) - 1) * math.exp(0.25))
    y = x + torch.where(x < 0.5, 0.08 * skewed - 0.01, 0.03 * e)
    for i in range(8):
        m._recent_pairs.append((x[8 * i : 8 * i + 8], y[8 * i : 8 * i + 8]))
    fits = ("calibrate_temperature", "fit_spectrum", "fit_amplitude", "fit_marginal")  # the ex-post fits' order
    assert fits_run(m, *fits) == ["calibrate_temperature", "fit_spectrum", "fit_amplitude", "fit_marginal"]
    level = (y - x).std(dim=(1, 2, 3), keepdim=True)
    for fit in range(2):  # the second fit reads the synthesis before the map again: the same outcome
        torch.manual_seed(11)
        raw = m.synthesize(x, level, amplitude=False) - x
        torch.manual_seed(11)
        got = m.synthesize(x, level) - x
        for lo, hi in ((0.15, 0.4), (0.6, 0.85)):  # away from the step at 0.5, which the bins' blend smooths
            sel = (x > lo) & (x < hi)
            want, fitted, flat = moments((y - x)[sel]), moments(got[sel]), moments(raw[sel])
            assert fitted[0] == pytest.approx(want[0], abs=0.003), (fit, lo, want, fitted, flat)
            assert fitted[1] == pytest.approx(want[1], rel=0.1), (fit, lo, want, fitted, flat)
            assert fitted[2] == pytest.approx(want[2], abs=0.35), (fit, lo, want, fitted, flat)
            assert abs(flat[2]) < 0.3  # the decoder's own noise: symmetric
        m.fit_marginal()
    assert moments((y - x)[x < 0.4])[2] < -1.5  # the real darks: skewed
    assert m.nets["vae"].noise_gain[0, 1] > 1.5 * m.nets["vae"].noise_gain[0, 6]  # the gain carries the level


def test_fit_marginal_gives_a_bin_without_pixels_its_neighbours_map():
    """Pairs whose clean values never reach the top half: the empty bins take the map of the nearest filled bin (the
    profile's trend continued flat), not the pooled one; knots stay increasing."""
    m = live(senm("method.amplitude=marginal", "method.amplitude_bins=4"))
    g = torch.Generator().manual_seed(3)
    x = torch.rand(16, 1, 32, 32, generator=g) * 0.35 + 0.15  # away from the clip
    y = x + torch.where(x < 0.25, 0.04, 0.015) * torch.randn(x.shape, generator=g)  # bin 0 noisier than bin 1
    m._recent_pairs.extend([(x[:8], y[:8]), (x[8:], y[8:])])
    m.calibrate_temperature()
    assert m.fit_marginal() is True
    q = m.nets["vae"].noise_quantiles[:, 0]  # (from / to, bin, knot)
    assert torch.all(q.diff(dim=-1) > 0)
    for b in (2, 3):
        assert torch.allclose(q[:, b], q[:, 1], atol=0.01), b
    spread = q[1, :, -4] - q[1, :, 3]  # the real side's spread per bin
    assert spread[0] > 1.5 * spread[1]


def test_fit_marginal_gives_a_bin_the_clip_cuts_its_neighbours_shape():
    """Real noise skewed low everywhere (x in 0.1-0.5), clipped at 0 in the darkest bin (x < 0.125: 1 in 4 pixels at
    0): that bin's map is its neighbour's, not the clipped histogram's (whose low tail would stop at -x)."""
    m = live(senm("method.amplitude=marginal", "method.amplitude_bins=8"))
    g = torch.Generator().manual_seed(5)
    x = torch.rand(32, 1, 32, 32, generator=g) * 0.4 + 0.02
    e = torch.randn(x.shape, generator=g)
    y = (x - 0.05 * (torch.exp(0.5 * e) - math.exp(0.125))).clamp(0, 1)
    m._recent_pairs.extend([(x[8 * i : 8 * i + 8], y[8 * i : 8 * i + 8]) for i in range(4)])
    assert float(((y <= 0) & (x < 0.125)).sum() / (x < 0.125).sum()) > 0.01  # the clip cuts bin 0
    m.calibrate_temperature()
    m.fit_amplitude()
    assert m.fit_marginal() is True
    q = m.nets["vae"].noise_quantiles[:, 0]
    assert torch.allclose(q[:, 0], q[:, 1], atol=0.02)
    m.fit_amplitude()
    import raytrain.methods.senm.synthesis as syn

    syn.MARGINAL_CLIPPED, keep = 1.0, syn.MARGINAL_CLIPPED  # every bin counted: bin 0's own, clipped shape
    try:
        m.fit_marginal()
    finally:
        syn.MARGINAL_CLIPPED = keep
    assert not torch.allclose(m.nets["vae"].noise_quantiles[1, 0, 0], q[1, 1], atol=0.1)


# ------------------------------------------------------------------------------------ adversarial terms, decoder merges
def softplus(v: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.softplus(v)


R, F_ = torch.tensor([2.0, 0.0]), torch.tensor([-1.0, 4.0])  # D's logits on the real and the fake batch


@pytest.mark.parametrize("gan", ["ragan", "lsgan"])
def test_gan_terms_have_their_known_values(gan):
    """Hand values on logits r = (2, 0), f = (-1, 4) (mean r = 1, mean f = 1.5): RaGAN (ESRGAN)
    G = [BCE(r - mean f, 0) + BCE(f - mean r, 1)] / 2 = [(sp(0.5) + sp(-1.5)) / 2 + (sp(2) + sp(-3)) / 2] / 2,
    D = [BCE(r - mean f, 1) + BCE(f - mean r, 0)] / 2 = [(sp(-0.5) + sp(1.5)) / 2 + (sp(-2) + sp(3)) / 2] / 2, with
    BCE(l, 1) = sp(-l), BCE(l, 0) = sp(l), sp = softplus; LSGAN G = mean (f - 1)^2 = 6.5 (not mean f^2 = 8.5),
    D = mean (r - 1)^2 + mean f^2 = 1 + 8.5."""
    m = senm(f"method.gan={gan}")
    g, d = float(m._gan_g(R, F_)), float(m._gan_d(R, F_))
    if gan == "ragan":
        want_g = (softplus(R - 1.5).mean() + softplus(-(F_ - 1.0)).mean()) / 2
        want_d = (softplus(-(R - 1.5)).mean() + softplus(F_ - 1.0).mean()) / 2
        assert g == pytest.approx(float(want_g), abs=1e-6) and d == pytest.approx(float(want_d), abs=1e-6)
        assert g == pytest.approx(0.83775, abs=1e-4) and d == pytest.approx(1.33775, abs=1e-4)  # by hand
    else:
        assert g == pytest.approx(6.5) and d == pytest.approx(9.5)


class Judge(torch.nn.Module):
    """A discriminator whose logit is w * the sample's mean; records what it judges."""

    def __init__(self):
        super().__init__()
        self.w, self.seen = torch.nn.Parameter(torch.ones(())), []

    def forward(self, v):
        self.seen.append(v.detach().clone())
        return self.w * v.mean(dim=(1, 2, 3))


@pytest.mark.parametrize("gan", ["ragan", "lsgan"])
def test_the_discriminator_judges_real_noisy_images_against_the_noisy_reconstructions(gan):
    """The VAE step's adversarial term judges (real: the noisy images of the paired and target batches, fake: rec_y of
    the same samples); D's step judges the same two with the fake detached; both at the recorded logits' known
    values; the VAE's loss carries the term times adv_weight."""
    m = senm("method.adv_weight=0.5", f"method.gan={gan}")
    m.nets["disc"] = judge = Judge()
    m.optimizers["disc"] = torch.optim.SGD(judge.parameters(), lr=0.0)
    x, y = pair(n=2)
    y_t = pair(n=2, seed=3)[1]
    out = m.train_step({"paired": {"clean": x, "noisy": y}, "target": {"noisy": y_t}}, 1)
    real, fake, d_real, d_fake = judge.seen
    assert torch.equal(real, torch.cat([y, y_t])) and torch.equal(d_real, real)
    assert fake.shape == real.shape and not torch.equal(fake, real) and torch.equal(d_fake, fake)
    r, f = real.mean(dim=(1, 2, 3)), fake.mean(dim=(1, 2, 3))
    if gan == "ragan":
        want_g = (softplus(r - f.mean()).mean() + softplus(-(f - r.mean())).mean()) / 2
        want_d = (softplus(-(r - f.mean())).mean() + softplus(f - r.mean()).mean()) / 2
    else:
        want_g, want_d = ((f - 1) ** 2).mean(), ((r - 1) ** 2).mean() + (f**2).mean()
    assert out.losses["adv"] == pytest.approx(float(want_g), abs=1e-5)
    assert out.losses["d_loss"] == pytest.approx(float(want_d), abs=1e-5)
    w = m.weights(1)
    rest = sum(w[k] * out.losses[k] for k in ("rec_x", "rec_y", "kl_n", "kl_z", "level"))
    assert out.losses["loss"] == pytest.approx(rest + 0.5 * out.losses["adv"], rel=1e-4)


@pytest.mark.parametrize("branch, head", [("acts_x", "q_z_x"), ("acts_y", "q_z_y"), ("acts_n", "q_zn")])
def test_the_top_down_pass_adds_each_encoder_activation_to_the_decoder_state(branch, head):
    """Each group's posterior reads dec + (its encoder's activation of that group): raising one group's activation by
    d raises exactly that head's input by +d (the z draws of the groups above are replayed by the seed)."""
    m = senm("method.level_conditioning=false")
    vae = m.nets["vae"]
    torch.manual_seed(0)
    x, y = pair(n=2)
    acts = {"acts_x": vae.enc_x(x), "acts_y": vae.enc_y(y), "acts_n": vae.enc_n(y)}
    pick = torch.tensor([1.0, 0.0]).view(2, 1, 1, 1)
    for g in range(GROUPS):
        got: list[torch.Tensor] = []
        keep = lambda _m, inp, got=got: got.append(inp[0].detach().clone())  # noqa: E731
        hook = getattr(vae, head)[g].register_forward_pre_hook(keep)
        for delta in (0.0, 0.25):
            a = {k: [t.detach().clone() for t in v] for k, v in acts.items()}
            a[branch][g] = a[branch][g] + delta
            torch.manual_seed(1)
            with torch.no_grad():
                vae.top_down(a["acts_x"], a["acts_y"], a["acts_n"], None, pick_x=pick, noise="posterior")
        hook.remove()
        assert torch.allclose(got[1] - got[0], torch.full_like(got[0], 0.25), atol=1e-5), (branch, g)
