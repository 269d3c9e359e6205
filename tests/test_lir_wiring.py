"""LIR's wiring as known answers: every net replaced by a known scalar function that records what it is given, the
images constant, so each loss of eq. 14 (and each discriminator loss) has a value worked out by hand below. A
mis-wired method (a swapped target, the wrong pair or domain, [0, 1] instead of [-1, 1], a flipped sign, an ignored
weight, restoring through the wrong encoder) changes a number here.

The hand computation, with x = 0.6 (the noisy image in [-1, 1]) and y = -0.2 (the clean one):
  E_X(v) = v/2, E_Y(v) = v/4, E^N_X(v) = (mu, logvar) = (v/10, -20), G_Y(z) = 3z, G_X(z, zn) = z + zn,
  D_Y(v) = v, D_X(v) = 2v, D_R(z) = z
  z_x = 0.3, z_y = -0.05, zn = 0.06;   x2y = G_Y(z_x) = 0.9, y2x = G_X(z_y, zn) = 0.01
  rec:  |G_X(z_x, zn) - x| + |G_Y(z_y) - y| = |0.36 - 0.6| + |-0.15 + 0.2| = 0.29
  cc:   zn' = E^N_X(y2x) = 0.001; |G_X(E_Y(x2y), zn') - x| + |G_Y(E_X(y2x)) - y| = |0.226 - 0.6| + |0.015 + 0.2| = 0.589
  adv:  (D_Y(x2y) - 1)^2 + (D_X(y2x) - 1)^2 = 0.01 + 0.9604 = 0.9704
  repr: (D_R(z_x) - 1/2)^2 + (D_R(z_y) - 1/2)^2 = 0.04 + 0.3025 = 0.3425
  bc:   (0.25 + 0.5 + 1) * (|x - x2y| + |y - y2x|) = 1.75 * (0.3 + 0.21) = 0.8925   (blurs of constants are constants)
  sc:   |(x+1)/2 - (x2y+1)/2| + |(y+1)/2 - (y2x+1)/2| = 0.15 + 0.105 = 0.255    (a mean-|a-b| feature loss)
  kl:   0.5 (mu^2 + e^logvar - 1 - logvar) = 0.5 (0.0036 + 2.1e-9 + 19) = 9.5018
  D_X, D_Y step: (D_X(x) - 1)^2 + D_X(y2x)^2 + (D_Y(y) - 1)^2 + D_Y(x2y)^2 = 0.04 + 0.0004 + 1.44 + 0.81 = 2.2904
  D_R step (clean codes real): (D_R(z_y) - 1)^2 + D_R(z_x)^2 = 1.1025 + 0.09 = 1.1925
"""

import math

import pytest
import torch
from torch import nn

from raytrain.config import load_config
from raytrain.methods import build_method

X, Y = 0.6, -0.2
WEIGHTS = {"lambda_R": 2.0, "lambda_adv": 3.0, "lambda_CC": 5.0, "lambda_rec": 7.0, "lambda_bc": 11.0,
           "lambda_sc": 13.0, "lambda_KL": 0.017}  # fmt: skip
KNOWN = {"rec": 0.29, "cc": 0.589, "adv": 0.9704, "repr": 0.3425, "bc": 0.8925, "sc": 0.255, "kl": 9.5018}
TOL = 2e-4  # the noise code's sampling noise: std e^-10


class Fake(nn.Module):
    """A known function of its input times a weight of 1 (something to receive a gradient); records its inputs."""

    def __init__(self, name, fn, log):
        super().__init__()
        self.name, self.fn, self.log = name, fn, log
        self.w = nn.Parameter(torch.ones(()))

    def forward(self, v):
        self.log.append((self.name, v.detach().clone()))
        return self.w * self.fn(v)


class FeatureL1(nn.Module):
    """Stands in for SCM: mean |a - b|, recording the pair (in [0, 1], as VGG expects)."""

    def __init__(self, log):
        super().__init__()
        self.log = log

    def forward(self, a, b):
        self.log.append(("scm", a.detach().clone(), b.detach().clone()))
        return (a - b).abs().mean()


def wired(*extra, drop=()):
    """A tiny LIR whose nets are the known functions of the module docstring (the weights of WEIGHTS but ``drop``);
    returns (method, log)."""
    sets = ["method.name=lir", "method.width=4", "method.n_res=1", "method.noise_dim=1", "method.disc_width=4",
            "method.disc_layers=2", "method.disc_scales=1", "method.repr_widths=[4,4,4,4]",
            "method.scm_backbone=random", "method.repr_steps=1", "data.split=two_domain",
            *(f"method.{k}={v}" for k, v in WEIGHTS.items() if k not in drop), *extra]  # fmt: skip
    m = build_method(load_config(None, sets), torch.device("cpu"))
    log: list = []
    fns = {
        "enc_noisy": lambda v: v / 2,
        "enc_clean": lambda v: v / 4,
        "enc_noise": lambda v: torch.cat([v / 10, torch.full_like(v, -20.0)], 1) if m.m.kl == "gaussian" else v / 10,
        "gen_clean": lambda z: 3 * z,
        "gen_noisy": lambda zc: zc.sum(1, keepdim=True),
        "disc_clean": lambda v: v,
        "disc_noisy": lambda v: 2 * v,
        "disc_repr": lambda z: z,
    }
    for k in list(m.nets):
        m.nets[k] = Fake(k, fns[k], log)
    if m.scm is not None:
        m.scm = FeatureL1(log)
    gen = [p for k in ("enc_noisy", "enc_clean", "enc_noise", "gen_noisy", "gen_clean") if k in m.nets
           for p in m.nets[k].parameters()]  # fmt: skip
    m.optimizers = {"gen": torch.optim.SGD(gen, lr=0.0),
                    "disc": torch.optim.SGD([m.nets["disc_noisy"].w, m.nets["disc_clean"].w], lr=0.0)}  # fmt: skip
    if "disc_repr" in m.nets:
        m.optimizers["disc_repr"] = torch.optim.SGD(m.nets["disc_repr"].parameters(), lr=0.0)
    return m, log


def const(v, s=8):
    return torch.full((1, 1, s, s), float(v))


def seen(log, name):
    """The constant value of each input the named net was given, in order."""
    return [round(float(t.mean()), 4) for n, t, *_ in log if n == name]


def test_every_loss_of_eq14_has_its_known_value_and_the_weights_apply():
    m, log = wired()
    losses = m.generator_losses(const(X), const(Y))
    assert set(losses) == set(KNOWN)
    for k, want in KNOWN.items():
        assert float(losses[k].detach()) == pytest.approx(want, abs=TOL), k
    total = float(m.weighted(losses).detach())
    keys = {"repr": "lambda_R", "adv": "lambda_adv", "cc": "lambda_CC", "rec": "lambda_rec", "bc": "lambda_bc",
            "sc": "lambda_sc", "kl": "lambda_KL"}  # fmt: skip
    assert total == pytest.approx(sum(WEIGHTS[keys[k]] * v for k, v in KNOWN.items()), abs=20 * TOL)


def test_which_net_sees_which_tensor_in_the_generator_step():
    m, log = wired()
    m.generator_losses(const(X), const(Y))
    # E_X: x, then the translated y2x (cc_y); E_Y: y, then the translated x2y (cc_x)
    assert seen(log, "enc_noisy") == [X, 0.01] and seen(log, "enc_clean") == [Y, 0.225 * 4]
    assert seen(log, "enc_noise") == [X, 0.01]  # the noise code of the noisy x, then of y2x
    assert seen(log, "gen_clean") == [0.3, -0.05, 0.005]  # x2y = G_Y(z_x), rec_y = G_Y(z_y), cc_y = G_Y(E_X(y2x))
    # G_X gets [z, zn] stacked: y2x, rec_x, cc_x (the mean over both channels)
    assert seen(log, "gen_noisy") == pytest.approx([(-0.05 + 0.06) / 2, (0.3 + 0.06) / 2, (0.225 + 0.001) / 2], abs=TOL)
    assert seen(log, "disc_clean") == [0.9] and seen(log, "disc_noisy") == [0.01]  # each judges its own domain
    assert seen(log, "disc_repr") == [0.3, -0.05]
    scm = [(round(float(a.mean()), 4), round(float(b.mean()), 4)) for n, a, b in (e for e in log if e[0] == "scm")]
    assert scm == [((X + 1) / 2, 0.95), ((Y + 1) / 2, 0.505)]  # in [0, 1]: (x, x2y), (y, y2x)


def test_the_generator_step_moves_only_generators_and_the_discriminator_steps_only_theirs():
    m, _ = wired("method.repr_updates=own")
    m.step_generators(const(X), const(Y))
    grads = {k: net.w.grad for k, net in m.nets.items()}
    assert all(grads[k] is not None for k in ("enc_noisy", "enc_clean", "enc_noise", "gen_noisy", "gen_clean"))
    assert all(grads[k] is None for k in ("disc_noisy", "disc_clean", "disc_repr"))
    assert all(p.requires_grad for k in ("disc_noisy", "disc_clean", "disc_repr") for p in m.nets[k].parameters())
    m, _ = wired("method.repr_updates=own")
    m.step_domain_disc(const(X), const(Y))
    assert {k for k, net in m.nets.items() if net.w.grad is not None} == {"disc_noisy", "disc_clean"}


def test_official_repr_updates_also_step_d_r_in_the_d_and_g_updates():
    """The official trainer steps D_R's optimiser in dis_update (its loss added) and in gen_update (the 1/2 term)."""
    m, log = wired()  # repr_updates: official, the default
    loss, ok = m.step_domain_disc(const(X), const(Y))
    assert ok and loss == pytest.approx(2.2904 + 1.1925, abs=TOL)  # D_X, D_Y and D_R's losses
    assert {k for k, net in m.nets.items() if net.w.grad is not None} == {"disc_noisy", "disc_clean", "disc_repr"}
    assert float(m.nets["disc_repr"].w.grad) == pytest.approx(3 * 0.285, abs=1e-4)  # lambda_adv x D_R's gradient
    m, _ = wired()
    m.step_generators(const(X), const(Y))
    grads = {k: net.w.grad for k, net in m.nets.items()}
    assert grads["disc_noisy"] is None and grads["disc_clean"] is None
    # lambda_R x d/dw [(w z_x - 1/2)^2 + (w z_y - 1/2)^2] = 2 x 2 ((0.3 - 0.5) 0.3 + (-0.05 - 0.5)(-0.05)) = -0.13
    assert float(grads["disc_repr"]) == pytest.approx(-0.13, abs=1e-4)


def test_domain_discriminator_step_known_loss_targets_and_weight():
    m, log = wired("method.repr_updates=own")
    loss, ok = m.step_domain_disc(const(X), const(Y))
    assert ok and loss == pytest.approx(2.2904, abs=TOL)
    assert seen(log, "disc_noisy") == [X, 0.01] and seen(log, "disc_clean") == [Y, 0.9]  # real, then translated
    # d/dw of lambda_adv * [(2wX - 1)^2 + (2w y2x)^2] at w = 1: 3 * (2 * 0.2 * 1.2 + 2 * 0.02 * 0.02) = 1.4424
    assert float(m.nets["disc_noisy"].w.grad) == pytest.approx(3 * 0.4808, abs=1e-3)
    # D_Y: 3 * (2 * (-1.2) * (-0.2) + 2 * 0.9 * 0.9) = 3 * 2.1 = 6.3
    assert float(m.nets["disc_clean"].w.grad) == pytest.approx(6.3, abs=1e-3)


def test_representation_discriminator_step_known_loss():
    m, log = wired()
    loss, ok = m.step_repr_disc(const(X), const(Y))
    assert ok and loss == pytest.approx(1.1925, abs=TOL)
    assert seen(log, "disc_repr") == [-0.05, 0.3]  # the clean code as real, then the noisy one
    # d/dw [(w z_y - 1)^2 + (w z_x)^2] = 2 (-1.05)(-0.05) + 2 (0.3)(0.3) = 0.285
    assert float(m.nets["disc_repr"].w.grad) == pytest.approx(0.285, abs=1e-4)


def test_train_step_maps_each_domain_into_minus_one_one():
    m, log = wired()
    batches = {"target": {"noisy": const((X + 1) / 2), "clean": const(0.123)},  # decoys: a domain's other key
               "source": {"clean": const((Y + 1) / 2), "noisy": const(0.321)}}  # fmt: skip
    out = m.train_step(batches, 1)
    assert not out.skipped
    assert seen(log, "enc_noisy")[0] == X and seen(log, "enc_clean")[0] == Y
    assert out.losses["g_rec"] == pytest.approx(KNOWN["rec"], abs=TOL)


def test_restore_goes_through_the_noisy_encoder_and_the_clean_generator():
    m, log = wired()
    out = m.restore(const((X + 1) / 2, 9))  # 9 px: padded to the stride and cropped back
    assert out.shape == (1, 1, 9, 9)
    assert float(out.mean()) == pytest.approx((3 * X / 2 + 1) / 2, abs=1e-6)  # (G_Y(E_X(x)) + 1) / 2 = 0.95
    assert {n for n, *_ in log} == {"enc_noisy", "gen_clean"}


def test_the_kl_variants_known_values():
    m, _ = wired()
    _, value = m.encode_noise(const(X))
    assert float(value.detach()) == pytest.approx(9.5018, abs=TOL)  # KL(N(0.06, e^-20) || N(0, 1))
    m, _ = wired("method.kl=mu2")
    code, value = m.encode_noise(const(X))
    assert float(value.detach()) == pytest.approx(0.0036, abs=1e-7) and float(code.mean()) == pytest.approx(0.06)


def test_official_mu2_adds_unit_noise_to_every_decoded_code_and_takes_the_kl_of_all_six():
    """kl: mu2 as the official trainer: with the code noise set to zero the losses are the known ones but the KL,
    mean(mu^2) of z_x, z_y, zn and of the cycle's E_Y(x2y), E_X(y2x), E^N_X(y2x)."""
    m, log = wired("method.kl=mu2")
    m.code_noise = lambda like: torch.zeros_like(like)
    losses = m.generator_losses(const(X), const(Y))
    kl = 0.3**2 + 0.05**2 + 0.06**2 + 0.225**2 + 0.005**2 + 0.001**2
    assert float(losses["kl"].detach()) == pytest.approx(kl, abs=1e-6)
    for k in ("rec", "cc", "adv", "repr", "bc", "sc"):
        assert float(losses[k].detach()) == pytest.approx(KNOWN[k], abs=1e-5), k
    m, log = wired("method.kl=mu2")
    m.code_noise = lambda like: torch.full_like(like, 0.5)  # a visible 'noise': every decoded code is shifted
    m.generator_losses(const(X), const(Y))
    # G_Y sees z_x + 0.5, z_y + 0.5, E_X(y2x) + 0.5; G_X sees [z, zn] + 0.5 (channel mean + 0.5)
    assert seen(log, "gen_clean")[:2] == pytest.approx([0.8, 0.45], abs=1e-4)
    assert seen(log, "gen_noisy")[0] == pytest.approx((-0.05 + 0.06) / 2 + 0.5, abs=1e-4)
    torch.manual_seed(0)
    m, _ = wired("method.kl=mu2")
    eps = m.code_noise(torch.zeros(1, 4, 64, 64))
    assert float(eps.std()) == pytest.approx(1.0, rel=0.03) and abs(float(eps.mean())) < 0.03
    m, _ = wired()
    assert m.code_noise(torch.zeros(1, 1, 4, 4)) is None  # the paper's KL: no code noise


@pytest.mark.parametrize(
    "variant, weight, absent",
    [("method.noise_encoder=false", "lambda_KL", "kl"), ("method.repr_disc=false", "lambda_R", "repr"),
     ("method.bcm=false", "lambda_bc", "bc"), ("method.scm=false", "lambda_sc", "sc")],
)  # fmt: skip
def test_each_ablation_drops_exactly_its_term(variant, weight, absent):
    m, _ = wired(variant, drop=(weight,))
    losses = m.generator_losses(const(X), const(Y))
    if absent == "kl":  # (a) without E^N_X the KL is 0 and G_X sees the content code alone: y2x = z_y = -0.05
        assert float(losses["kl"].detach()) == 0.0
        kept = {"adv": 0.01 + (2 * -0.05 - 1) ** 2}
    else:
        assert absent not in losses
        kept = {k: v for k, v in KNOWN.items() if k != absent}
    for k, want in kept.items():
        assert float(losses[k].detach()) == pytest.approx(want, abs=TOL), k


def test_the_noise_code_is_sampled_with_the_posteriors_std():
    """gaussian: z = mu + exp(logvar / 2) eps (logvar = log 0.25 here: std 0.5)."""
    m, log = wired()
    m.nets["enc_noise"] = Fake("enc_noise", lambda v: torch.cat([v / 10, torch.full_like(v, -1.3862944)], 1), log)
    torch.manual_seed(0)
    z, _ = m.encode_noise(const(X, 128))
    assert float(z.mean()) == pytest.approx(X / 10, abs=0.02) and float(z.std()) == pytest.approx(0.5, rel=0.03)


def softplus(v: float) -> float:
    return math.log1p(math.exp(v))


def test_bce_representation_discriminator_known_loss_targets_and_inputs():
    """``repr_gan: bce`` (the paper's eq. 9 as a cross-entropy): D_R's loss with the clean code real (target 1) and the
    noisy one fake (target 0): BCE(D_R(z_y), 1) + BCE(D_R(z_x), 0) = softplus(-z_y) + softplus(z_x)."""
    m, log = wired("method.repr_gan=bce")
    loss, ok = m.step_repr_disc(const(X), const(Y))
    z_x, z_y = X / 2, Y / 4
    assert ok and loss == pytest.approx(softplus(-z_y) + softplus(z_x), abs=1e-6)  # 0.7185 + 0.8544
    assert seen(log, "disc_repr") == [z_y, z_x]
    # d/dw [softplus(-w z_y) + softplus(w z_x)] at w = 1 = -z_y sigmoid(-z_y) + z_x sigmoid(z_x)
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    assert float(m.nets["disc_repr"].w.grad) == pytest.approx(-z_y * sig(-z_y) + z_x * sig(z_x), abs=1e-6)


def test_bce_representation_term_of_the_generator_confuses_d_r_to_one_half():
    """The encoders' side of eq. 9 with ``repr_gan: bce``: BCE(D_R(z_x), 1/2) + BCE(D_R(z_y), 1/2), where
    BCE(l, 1/2) = softplus(l) - l/2; its weight is lambda_R."""
    m, log = wired("method.repr_gan=bce")
    losses = m.generator_losses(const(X), const(Y))
    z_x, z_y = X / 2, Y / 4
    want = softplus(z_x) - z_x / 2 + softplus(z_y) - z_y / 2  # 0.7044 + 0.6934
    assert float(losses["repr"].detach()) == pytest.approx(want, abs=1e-5)
    assert seen(log, "disc_repr") == [z_x, z_y]
    without = m.weighted({k: v for k, v in losses.items() if k != "repr"})
    assert float((m.weighted(losses) - without).detach()) == pytest.approx(WEIGHTS["lambda_R"] * want, abs=1e-4)


def test_the_validation_picture_shows_the_learned_noise_on_the_clean_image():
    """preview: noisy | restored G_Y(E_X(x)) | clean | degraded clean G_X(E_Y(y), E^N_X(x)), each back in [0, 1]:
    (0.6 + 1) / 2, (3 * 0.3 + 1) / 2, (-0.2 + 1) / 2, (-0.05 + 0.06 + 1) / 2; 10 px sides cropped to 8, the
    encoder stride's multiple."""
    m, log = wired()
    tiles = m.preview((const(Y, 10) + 1) / 2, (const(X, 10) + 1) / 2)
    assert [tuple(t.shape[-2:]) for t in tiles] == [(8, 8)] * 4
    assert [round(float(t.mean()), 4) for t in tiles] == pytest.approx([0.8, 0.95, 0.4, 0.505], abs=TOL)
    assert seen(log, "enc_clean") == [Y] and seen(log, "enc_noise") == [X]  # the clean image's code, x's noise code
