"""SeNM-VAE: KLs, Proposition 1, eq. 11's per-domain terms, synthesis and levels, guards, full state."""

import math

import numpy as np
import pytest
import torch

from raytrain import locations
from raytrain.config import load_config
from raytrain.errors import ConfigError
from raytrain.layout import to_image
from raytrain.losses.kl import gaussian_kl_two
from raytrain.methods import build_method
from raytrain.methods.senm.nets import group_layout

TINY_SENM = [
    "method.name=senm", "method.width=8", "method.growth=4", "method.z_dim=4", "method.zn_dim=2",
    "method.level_net_width=4", "method.disc_width=4", "method.blocks_per_scale=[1,1]", "data.paired.count=2",
]  # fmt: skip


def senm(*extra):
    torch.manual_seed(0)
    return build_method(load_config(None, [*TINY_SENM, *extra]), torch.device("cpu"))


def pair(n=4, s=32):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(n, 1, s, s, generator=g)
    return x, x + 0.1 * torch.randn(n, 1, s, s, generator=g)


# ---------------------------------------------------------------------------------------------- Gaussian KLs
def test_closed_form_kl_matches_monte_carlo():
    torch.manual_seed(0)
    mu_q, mu_p = torch.randn(6), torch.randn(6)
    lv_q, lv_p = torch.randn(6) * 0.5, torch.randn(6) * 0.5
    q = torch.distributions.Normal(mu_q, (0.5 * lv_q).exp())
    p = torch.distributions.Normal(mu_p, (0.5 * lv_p).exp())
    z = q.sample((400_000,))
    mc = (q.log_prob(z) - p.log_prob(z)).mean(0)
    assert torch.allclose(gaussian_kl_two(mu_q, lv_q, mu_p, lv_p), mc, atol=0.02)


def _mixture_kl_mc(p1, q1, q2, p, n=400_000):
    """Monte Carlo KL(p1 q1 + (1-p1) q2 || p) for 1-D Normals."""
    torch.manual_seed(1)
    pick = torch.rand(n) < p1
    z = torch.where(pick, q1.sample((n,)), q2.sample((n,)))
    log_mix = torch.logaddexp(math.log(p1) + q1.log_prob(z), math.log(1 - p1) + q2.log_prob(z))
    vals = log_mix - p.log_prob(z)
    return float(vals.mean()), float(vals.std() / math.sqrt(n))


@pytest.mark.parametrize("seed", range(5))
def test_proposition_1_bound_holds_on_random_gaussians(seed):
    g = torch.Generator().manual_seed(seed)
    mus, stds = torch.randn(3, generator=g) * 2, torch.rand(3, generator=g) + 0.3
    q1, q2, p = (torch.distributions.Normal(mus[i], stds[i]) for i in range(3))
    kl = torch.distributions.kl_divergence
    for p1 in (0.5, 0.2):
        mix, err = _mixture_kl_mc(p1, q1, q2, p)
        assert mix <= p1 * float(kl(q1, p)) + (1 - p1) * float(kl(q2, p)) + 4 * err  # eq. 6
        mix_q1, err = _mixture_kl_mc(p1, q1, q2, q1)  # q(z|x) = p(z|x): eq. 7
        assert mix_q1 <= (1 - p1) * float(kl(q2, q1)) + 4 * err


# --------------------------------------------------------------------------------------------- hierarchy
def test_default_hierarchy_has_seven_groups_two_scales():
    cfg = load_config(None, ["method.name=senm"])
    assert cfg.method.groups == 7
    assert group_layout(cfg.method.blocks_per_scale) == ["block", "block", "down"] + ["block"] * 4


def test_latent_shapes_per_group():
    m = senm()
    vae = m.nets["vae"]
    acts = vae.enc_x(torch.rand(2, 1, 32, 32))
    assert [a.shape[-1] for a in acts] == [32, 16, 16]  # block at full res, the downsampling group, a half-res block
    assert vae.q_z_x[1](acts[1])[0].shape == (2, 4, 16, 16) and vae.p_zn[1](torch.zeros(2, 9, 16, 16))[0].shape == (
        2, 2, 16, 16)  # fmt: skip
    # the image sides must divide by the total downsampling: one scale step here, two more with num_down=2
    assert vae.stride == 2 and senm("method.num_down=2").nets["vae"].stride == 8


# --------------------------------------------------------------------------------------------- eq. 11 terms
def _with_grad(m):
    return {k for k, net in m.nets.items() for p in net.parameters() if p.grad is not None and p.grad.abs().sum() > 0}


@pytest.mark.parametrize(
    "domain, terms",
    [
        ("paired", {"rec_x", "rec_y", "kl_n", "kl_z", "level"}),
        ("source", {"rec_x"}),
        ("target", {"rec_y", "kl_n"}),
    ],
)
def test_each_domain_touches_only_its_own_terms(domain, terms):
    m = senm("method.adv_weight=0")
    x, y = pair()
    batch = {"paired": {"clean": x, "noisy": y}, "source": {"clean": x}, "target": {"noisy": y}}[domain]
    got = m.domain_terms(domain, batch.get("clean"), batch.get("noisy"))
    assert {k for k in got if not k.startswith("_")} == terms
    assert all(v.shape == (4,) for k, v in got.items() if not k.startswith("_"))
    sum(v.mean() for k, v in got.items() if not k.startswith("_")).backward()
    vae = m.nets["vae"]
    used = {k for k in ("enc_x", "enc_y", "enc_n") if any(p.grad is not None for p in getattr(vae, k).parameters())}
    assert used == {"paired": {"enc_x", "enc_y", "enc_n"}, "source": {"enc_x"}, "target": {"enc_y", "enc_n"}}[domain]
    level_net_moved = any(p.grad is not None for p in m.nets["level_net"].parameters())
    assert level_net_moved == (domain == "paired")  # trained on pairs only; target levels are detached predictions


def test_table6_ablation_drops_rec_x_and_the_source_domain():
    m = senm("method.rec_x=false")
    assert m.domains == ("paired", "target")
    x, y = pair()
    assert "rec_x" not in m.domain_terms("paired", x, y)


def test_weights_anneal_the_noise_kl_and_scale_the_z_kl():
    m = senm("method.kl_anneal_steps=100", "method.kl_z_weight=1e-7")
    assert m.weights(50)["kl_n"] == pytest.approx(0.5e-2) and m.weights(500)["kl_n"] == pytest.approx(1e-2)
    assert m.weights(50)["kl_z"] == pytest.approx(1e-7)
    official = senm("method.kl_anneal_steps=100", "method.kl_z_scale=official")
    assert official.weights(500)["kl_z"] == pytest.approx(1e-9)  # KL_weight 1e-2 * KLZ_weight 1e-7


def test_train_step_moves_vae_level_net_and_disc_on_a_paired_batch():
    m = senm()
    x, y = pair()
    before = {k: [p.detach().clone() for p in net.parameters()] for k, net in m.nets.items()}
    out = m.train_step({"paired": {"clean": x, "noisy": y}}, 1)
    assert not out.skipped and {"rec_x", "rec_y", "kl_n", "kl_z", "level", "adv", "d_loss"} <= set(out.losses)
    moved = {k for k, ps in before.items()
             if any(not torch.equal(a, b) for a, b in zip(ps, m.nets[k].parameters(), strict=True))}  # fmt: skip
    assert moved == {"vae", "level_net", "disc"}
    assert all(p.requires_grad for p in m.nets["disc"].parameters())  # unfrozen again after the VAE step


def test_per_sample_domain_sampling_mixes_domains_deterministically():
    m = senm("method.domain_sampling=sample", "train.batch_size=4")
    x, y = pair()
    batches = {"paired": {"clean": x, "noisy": y}, "source": {"clean": x}, "target": {"noisy": y}}
    split_a, split_b = m._split(batches, 7), m._split(batches, 7)
    assert sum(next(iter(b.values())).shape[0] for b in split_a.values()) == 4
    assert {d: b.get("clean", b.get("noisy")).shape[0] for d, b in split_a.items()} == {
        d: b.get("clean", b.get("noisy")).shape[0] for d, b in split_b.items()}  # fmt: skip
    assert not m.train_step(batches, 7).skipped


# ---------------------------------------------------------------------------------------------------- guards
def test_nan_terms_are_dropped_or_skip_the_step():
    m = senm()
    finite, nan = torch.tensor(1.0, requires_grad=True), torch.tensor(float("nan"))
    assert set(m._drop_nonfinite({"rec_x": finite, "kl_z": nan})) == {"rec_x"}  # official: NaN terms left out
    assert senm("method.nan_policy=skip_step")._drop_nonfinite({"rec_x": finite, "kl_z": nan}) is None


def test_grad_norm_over_the_skip_threshold_skips_the_update():
    m = senm("method.grad_skip=1e-12")
    x, y = pair()
    before = [p.detach().clone() for p in m.nets["vae"].parameters()]
    out = m.train_step({"paired": {"clean": x, "noisy": y}}, 1)
    assert out.skipped and all(torch.equal(a, b) for a, b in zip(before, m.nets["vae"].parameters(), strict=True))


# ------------------------------------------------------------------------------------------------- synthesis
def test_synthesis_shapes_levels_and_level_prior():
    m = senm()
    x, y = pair()
    for step in range(1, 4):
        m.train_step({"paired": {"clean": x, "noisy": y}}, step)
    lo, hi = m.nets["levels"].range()
    true = float((y - x).std(dim=(1, 2, 3)).mean())
    assert lo <= true <= hi and m.nets["levels"].prior().numel() >= 12  # 3 steps x 4 paired patches (+ predictions)
    m.train(False)
    out = m.synthesize(torch.rand(3, 1, 29, 35))  # any size: padded to the stride and cropped back
    assert out.shape == (3, 1, 29, 35) and torch.isfinite(out).all()
    assert m.synthesize(torch.rand(1, 1, 32, 32), torch.full((1, 1, 1, 1), 0.1)).shape == (1, 1, 32, 32)
    rows = m.evaluate([(to_image(x), to_image(y))], "cpu")
    assert set(rows[0]) == set(m.val_keys) and rows[0]["noise_std_real"] == pytest.approx(
        float((y[0] - x[0]).std() * 255), rel=1e-3)  # fmt: skip


def test_level_stats_ring_buffer_keeps_the_most_recent():
    from raytrain.methods.senm.levels import LevelStats

    s = LevelStats(4)
    s.add(torch.tensor([9.0, 9.0, 9.0]))
    s.add(torch.tensor([1.0, 2.0, 3.0]))
    assert sorted(s.prior().tolist()) == [1.0, 2.0, 3.0, 9.0] and s.range() == (1.0, 9.0)
    assert set(s.sample(50, torch.Generator().manual_seed(0)).tolist()) <= {1.0, 2.0, 3.0, 9.0}


# ----------------------------------------------------------------------------------------------------- state
def test_full_state_roundtrip(tmp_path):
    from raytrain.train import checkpoint as ckpt

    a = senm("train.lr=1e-3", "train.schedule.kind=multistep", "train.schedule.milestones=[2]")
    x, y = pair()
    for step in range(1, 4):
        a.train_step({"paired": {"clean": x, "noisy": y}}, step)
        a.end_step()
    ckpt.save_checkpoint(tmp_path, a, 3, "{}", {})
    b = senm("train.lr=1e-3", "train.schedule.kind=multistep", "train.schedule.milestones=[2]")
    state = ckpt.load_state(tmp_path)
    b.load_state_dict(state)
    assert state["step"] == 3 and set(state["nets"]) == {"vae", "levels", "level_net", "disc"}
    for k in a.nets:
        for (name, ta), tb in zip(a.nets[k].state_dict().items(), b.nets[k].state_dict().values(), strict=True):
            assert torch.equal(ta, tb), (k, name)
    for k in a.optimizers:
        sa, sb = a.optimizers[k].state_dict(), b.optimizers[k].state_dict()
        assert sa["param_groups"][0]["lr"] == sb["param_groups"][0]["lr"] == pytest.approx(5e-4)  # halved at step 2
        for i in sa["state"]:
            assert torch.equal(sa["state"][i]["exp_avg"], sb["state"][i]["exp_avg"])
    assert a.schedulers["vae"].state_dict() == b.schedulers["vae"].state_dict()
    assert set(ckpt.load_inference(tmp_path)["nets"]) == {"vae", "levels"}  # synthesis needs the VAE and levels


# -------------------------------------------------------------------------------------------------- configs
@pytest.mark.parametrize(
    "overrides, message",
    [
        (["method.perceptual=vgg"], "perceptual=vgg needs method.perceptual_weights"),
        (["method.perceptual=lpips", "method.perceptual_weights=a.pth"], "needs method.lpips_weights"),
        (["method.kl_z_weight=2"], "method.kl_z_weight: Input should be less than or equal to 1"),
        (["method.width=10"], "must be a multiple of 4"),
    ],
)
def test_bad_senm_configs_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, ["method.name=senm", *overrides])


def test_missing_perceptual_file_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match=r"method.perceptual_weights: .*alex.pth not found"):
        senm("method.perceptual=lpips", f"method.perceptual_weights={tmp_path}/alex.pth",
             f"method.lpips_weights={tmp_path}/lin.pth")  # fmt: skip


@pytest.mark.parametrize("kind", ["vgg", "lpips"])
def test_perceptual_terms_run_with_random_backbones(kind):
    m = senm(f"method.perceptual={kind}", "method.perceptual_backbone=random")
    x, y = pair(s=64)
    out = m.train_step({"target": {"noisy": y}}, 1)
    assert "perc" in out.losses and np.isfinite(out.losses["perc"])


# ------------------------------------------------------------------------------------ Table 7: missing domains
def test_domains_follow_the_mix_and_the_rec_x_switch():
    cls = type(senm())
    cfg = lambda *o: load_config(None, [*TINY_SENM, *o])  # noqa: E731
    assert cls.domains_for(cfg()) == ("paired", "source", "target")
    assert cls.domains_for(cfg("data.mix={paired: 1, source: 0, target: 1}")) == ("paired", "target")
    assert cls.domains_for(cfg("data.mix={paired: 1, source: 0, target: 0}")) == ("paired",)
    assert cls.domains_for(cfg("method.rec_x=false")) == ("paired", "target")
    with pytest.raises(ConfigError, match="data.mix.paired: SeNM-VAE needs its paired domain"):
        cfg("data.mix={paired: 0, source: 1, target: 1}")


def test_a_full_paired_split_drops_the_empty_unpaired_domains(capsys):
    from raytrain.data.collection import load_domains
    from raytrain.train.launch import without_empty_domains

    cfg = load_config(None, [*TINY_SENM, "data.paired.fraction=1.0", "data.max_size=64", "data.tiles=32",
                             "data.patches.size=32", "data.val_images=2", "data.val_crop=32"])  # fmt: skip
    col = load_domains(cfg)
    assert len(col.domains["source"]) == len(col.domains["target"]) == 0 and len(col.domains["paired"]) > 0
    out = without_empty_domains(cfg, col)
    assert out.data.mix == {"paired": 1.0, "source": 0.0, "target": 0.0}
    assert type(senm()).domains_for(out) == ("paired",)
    assert "no source or target images" in capsys.readouterr().out
    semi = load_config(None, [*TINY_SENM, "data.max_size=64", "data.tiles=32", "data.patches.size=32",
                              "data.val_images=2", "data.val_crop=32"])  # fmt: skip
    assert without_empty_domains(semi, load_domains(semi)) is semi  # nothing empty: the config is kept as is


@pytest.mark.slow
def test_full_paired_and_paired_only_runs_train(ray_local, tmp_path):
    """Both settings side by side (raytrain/train/group.py, tracking off): each a one-worker Tune trial."""
    from raytrain.train.group import run_group

    settings = [["data.paired.fraction=1.0"], ["data.mix={paired: 1, source: 0, target: 0}"]]
    cfgs = [load_config(None, [*TINY_SENM, f"workdir={tmp_path}", f"name=t7-{i}", "train.steps=3", "train.val_every=3",
                               "train.checkpoint_every=3", "scaling.num_workers=1", "data.max_size=64", "data.tiles=32",
                               "data.patches.size=32", "data.val_images=2", "data.val_crop=32",
                               "tracking.enabled=false", *setting]) for i, setting in enumerate(settings)]  # fmt: skip
    for res in run_group(cfgs, "t7"):
        assert res.checkpoint and res.metrics["step"] == 3 and np.isfinite(res.metrics["val_kld"])
        assert locations.is_file(locations.join(res.checkpoint, "model.pt")) and res.run_id is None
