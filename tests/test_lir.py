"""LIR: losses on known inputs, net shapes, which parameters each phase moves, ablation variants, state."""

import numpy as np
import pytest
import torch
from conftest import BACKGROUND

from raytrain.config import load_config
from raytrain.errors import ConfigError, RaytrainError
from raytrain.losses.adversarial import bce_target, lsgan_d, lsgan_target
from raytrain.losses.consistency import BackgroundConsistency, blur_kernels
from raytrain.losses.kl import gaussian_kl, gaussian_kl_two, mu_squared
from raytrain.methods import build_method
from raytrain.nn.backbones import LAYERS, VGG19Features

TINY_LIR = [
    "method.name=lir", "method.width=4", "method.n_res=1", "method.noise_dim=4", "method.disc_width=4",
    "method.disc_layers=2", "method.disc_scales=2", "method.repr_widths=[4,4,4,4]", "method.scm_backbone=random",
    "method.repr_steps=1", "data.split=two_domain",
]  # fmt: skip


def lir(*extra):
    return build_method(load_config(None, [*TINY_LIR, *extra]), torch.device("cpu"))


def batch(n=2, s=16):
    torch.manual_seed(0)
    return {"target": {"noisy": torch.rand(n, 1, s, s)}, "source": {"clean": torch.rand(n, 1, s, s)}}


# ----------------------------------------------------------------------------------------------------- losses
def test_bcm_zero_for_identical_and_weights_scales():
    a, b = torch.rand(2, 1, 32, 32), torch.rand(2, 1, 32, 32)
    assert float(BackgroundConsistency()(a, a)) == 0.0
    full = BackgroundConsistency("paper", (0.25, 0.5, 1.0))
    parts = full.per_scale(a, b)
    assert float(full(a, b)) == pytest.approx(float(0.25 * parts[0] + 0.5 * parts[1] + 1.0 * parts[2]))
    only_last = BackgroundConsistency("paper", (0.0, 0.0, 1.0))
    assert float(only_last(a, b)) == pytest.approx(float(parts[2]))


def test_bcm_readings_differ_as_documented():
    paper, official = blur_kernels("paper"), blur_kernels("official")
    assert [len(k) for k in paper] == [31, 55, 91]  # sigma 5 / 9 / 15 -> 2 ceil(3 sigma) + 1 taps
    assert [len(k) for k in official] == [5, 9, 15]  # kernel size 5 / 9 / 15, sigma 25: nearly a box filter
    assert float(official[2].max() - official[2].min()) < 0.01
    assert all(float(k.sum()) == pytest.approx(1.0) for k in paper + official)


def test_kl_zero_at_standard_normal_and_positive_elsewhere():
    z = torch.zeros(3, 4)
    assert float(gaussian_kl(z, z)) == 0.0 and float(mu_squared(z)) == 0.0
    assert float(gaussian_kl(z + 1, z)) == pytest.approx(0.5)
    mu_q, lv_q = torch.randn(1000), torch.randn(1000) * 0.3
    mc = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu_q, (0.5 * lv_q).exp()), torch.distributions.Normal(0.0, 1.0)
    )
    assert torch.allclose(gaussian_kl_two(mu_q, lv_q, torch.zeros(1000), torch.zeros(1000)), mc, atol=1e-5)


def test_adversarial_targets():
    ones, zeros, halves = torch.ones(5), torch.zeros(5), torch.full((5,), 0.5)
    assert float(lsgan_d(ones, zeros)) == 0.0  # a perfect D: real -> 1, fake -> 0
    assert float(lsgan_d(zeros, ones)) == 2.0
    assert float(lsgan_target([ones, ones], 1.0)) == 0.0  # multi-scale lists sum
    assert float(lsgan_target(halves, 0.5)) == 0.0  # eq. 9: encoders aim at D_R = 1/2
    assert float(bce_target(torch.zeros(5), 0.5)) == pytest.approx(0.6931, abs=1e-4)  # logit 0 = p 1/2 is optimal


# -------------------------------------------------------------------------------------------------- networks
def test_shapes_of_every_net():
    m = lir()
    n = m.nets
    x = torch.rand(2, 1, 32, 32)
    z = n["enc_noisy"](x)
    assert z.shape == (2, 16, 8, 8)  # width * 2**n_down channels at H/4, W/4
    assert n["enc_noise"](x).shape == (2, 8, 8, 8)  # mean and log-variance of a 4-channel noise code
    assert n["gen_clean"](z).shape == (2, 1, 32, 32)
    assert n["gen_noisy"](torch.cat([z, torch.zeros(2, 4, 8, 8)], 1)).shape == (2, 1, 32, 32)
    assert [o.shape for o in n["disc_noisy"](x)] == [(2, 1, 8, 8), (2, 1, 4, 4)]
    assert n["disc_repr"](z).shape == (2,)


def test_n_down_0_keeps_the_codes_at_full_resolution_and_restores_any_size():
    """The CPU recipe's ``n_down: 0``: content and noise codes at the image's own resolution (per-pixel noise can be
    decoded from z^N_X), stride 1, so odd sizes restore without padding; a train step runs on it."""
    m = lir("method.n_down=0")
    x = torch.rand(2, 1, 17, 19)
    z = m.nets["enc_noisy"](x)
    assert z.shape == (2, 4, 17, 19) and m.stride == 1  # width channels, no downsampling
    assert m.nets["enc_noise"](x).shape == (2, 8, 17, 19)
    assert m.restore(x).shape == x.shape
    out = m.train_step(batch(), 1)
    assert not out.skipped and torch.isfinite(torch.tensor(out.losses["g_total"]))
    assert m.restore(torch.rand(1, 1, 29, 35)).shape == (1, 1, 29, 35)  # any size: pad to the stride, crop back


def test_official_discriminators_double_their_width_per_layer():
    from raytrain.nn.blocks import MultiScaleDiscriminator

    def widths_and_params(growth):
        d = MultiScaleDiscriminator(3, 64, 4, 3, growth)
        convs = [c.out_channels for c in d.nets[0].modules() if isinstance(c, torch.nn.Conv2d)]
        return convs, sum(p.numel() for p in d.parameters())

    assert widths_and_params("double") == ([64, 128, 256, 512, 1], 8_271_171)  # UNIT's MsImageDis, 3 scales
    assert widths_and_params("constant") == ([64, 64, 64, 64, 1], 600_003)
    assert lir().m.disc_growth == "double"


def test_default_latent_is_256_by_quarter_resolution():
    cfg = load_config(None, ["method.name=lir", "method.scm=false", "method.n_res=0"])
    from raytrain.methods.lir.method import build_nets

    nets = build_nets(cfg.method, 1, inference=True)
    assert nets["enc_noisy"](torch.rand(1, 1, 64, 48)).shape == (1, 256, 16, 12)


def test_vgg_layers_and_torchvision_file(tmp_path):
    full = VGG19Features("conv5_1")
    assert len(full.features) == LAYERS["conv5_1"] + 1
    assert full(torch.rand(1, 1, 32, 32)).shape == (1, 512, 2, 2)
    tv = {f"features.{k}": v for k, v in full.features.state_dict().items()} | {"classifier.0.weight": torch.zeros(1)}
    torch.save(tv, tmp_path / "vgg19.pth")
    four = VGG19Features("conv4_1").load_torchvision(tmp_path / "vgg19.pth")
    assert torch.equal(four.features[0].weight, full.features[0].weight)
    torch.save({"x": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(RaytrainError, match="not a torchvision VGG-19"):
        VGG19Features().load_torchvision(tmp_path / "bad.pth")


# ------------------------------------------------------------------------------------------- update schedule
def _snapshot(m):
    return {k: [p.detach().clone() for p in net.parameters()] for k, net in m.nets.items()}


def _moved(before, m):
    def changed(k):
        return any(not torch.equal(a, b) for a, b in zip(before[k], m.nets[k].parameters(), strict=True))

    return {k for k in before if changed(k)}


@pytest.mark.parametrize("updates", ["own", "official"])
def test_each_phase_moves_exactly_its_parameter_groups(updates):
    m = lir(f"method.repr_updates={updates}")
    b = batch()
    x, y = b["target"]["noisy"] * 2 - 1, b["source"]["clean"] * 2 - 1
    official = {"disc_repr"} if updates == "official" else set()  # the official trainer steps D_R in every update
    before = _snapshot(m)
    m.step_repr_disc(x, y)
    assert _moved(before, m) == {"disc_repr"}
    before = _snapshot(m)
    m.step_domain_disc(x, y)
    assert _moved(before, m) == {"disc_noisy", "disc_clean"} | official
    before = _snapshot(m)
    m.step_generators(x, y)
    assert _moved(before, m) == {"enc_noisy", "enc_clean", "enc_noise", "gen_noisy", "gen_clean"} | official
    assert all(p.requires_grad for k in ("disc_noisy", "disc_clean", "disc_repr") for p in m.nets[k].parameters())


def test_generator_step_reports_every_loss_of_eq14():
    out = lir().train_step(batch(), 1)
    assert not out.skipped
    assert {"g_repr", "g_adv", "g_cc", "g_rec", "g_bc", "g_sc", "g_kl", "d_repr", "d_domain"} <= set(out.losses)


@pytest.mark.parametrize(
    "variant, absent_nets, absent_losses",
    [
        (["method.noise_encoder=false"], {"enc_noise"}, set()),  # (a) no E^N_X
        (["method.repr_disc=false"], {"disc_repr"}, {"g_repr", "d_repr"}),  # (b) no D_R
        (["method.bcm=false"], set(), {"g_bc"}),  # (c) no BCM
        ([], set(), set()),  # (d) full
    ],
)
def test_ablation_variants_train(variant, absent_nets, absent_losses):
    m = lir(*variant)
    assert not absent_nets & set(m.nets)
    b = batch()
    for step in range(1, 4):
        out = m.train_step(b, step)
        m.end_step()
    assert not out.skipped and not absent_losses & set(out.losses)
    assert all(torch.isfinite(torch.tensor(v)) for v in out.losses.values())


def test_official_variants_run():
    out = lir("method.kl=mu2", "method.bcm_reading=official", "method.scm_layer=conv4_1",
              "method.scm_instance_norm=true", "method.repr_gan=bce").train_step(batch(), 1)  # fmt: skip
    assert not out.skipped


def test_state_roundtrip_restores_every_net_and_optimiser(tmp_path):
    from raytrain.train import checkpoint as ckpt

    cfg = load_config(None, TINY_LIR)
    a = build_method(cfg, torch.device("cpu"))
    for step in range(1, 3):
        a.train_step(batch(), step)
        a.end_step()
    ckpt.save_checkpoint(tmp_path, a, 2, "{}", {})
    b = build_method(cfg, torch.device("cpu"))
    b.load_state_dict(ckpt.load_state(tmp_path))
    assert set(b.optimizers) == {"gen", "disc", "disc_repr"}
    for k in a.nets:
        for pa, pb in zip(a.nets[k].state_dict().values(), b.nets[k].state_dict().values(), strict=True):
            assert torch.equal(pa, pb), k
    for k in a.optimizers:
        assert a.optimizers[k].state_dict()["state"].keys() == b.optimizers[k].state_dict()["state"].keys()
    inf = ckpt.load_inference(tmp_path)
    assert set(inf["nets"]) == {"enc_noisy", "gen_clean"}  # restoration keeps only E_X and G_Y


# ------------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "overrides, message",
    [
        (["method.name=lir"], "scm=true needs VGG-19 weights: set method.scm_weights"),
        (["method.name=lir", "method.scm=false", "method.lambda_sc=2"], "lambda_sc=2.0 has no effect with scm=false"),
        (
            ["method.name=lir", "method.scm=false", "method.repr_disc=false", "method.lambda_adv=0"],
            "nothing aligns the two domains",
        ),
    ],
)
def test_nonsense_configs_are_rejected(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_missing_vgg_file_names_it(tmp_path):
    cfg = load_config(None, ["method.name=lir", f"method.scm_weights={tmp_path}/vgg19.pth", *TINY_LIR[1:-3]])
    with pytest.raises(ConfigError, match=r"method.scm_weights: .*vgg19.pth not found"):
        build_method(cfg, torch.device("cpu"))


# ------------------------------------------------------------------------------------------------ training
RECIPE_RUN = [  # configs/lir_awgn_blind.yaml (the CPU recipe), shortened: 100 steps of 32 px patches, one res block
    "train.steps=100", "train.val_every=50", "train.checkpoint_every=100", "train.log_every=25", "method.n_res=1",
    "data.patches.size=32", "data.max_size=128", "data.val_crop=96", "scaling.num_workers=1",
]  # fmt: skip


class LocalSession:
    """The loop's five calls to Ray (train/session.py), answered in this process: one rank on the CPU, no
    checkpoint to resume, reports kept in a list."""

    rank, world, device, prepare = 0, 1, torch.device("cpu"), None

    def __init__(self):
        self.reports: list[dict] = []

    def checkpoint(self):
        return None

    def report(self, metrics, directory=None):
        self.reports.append(dict(metrics))


def local_run(cfg) -> tuple[list[dict], str | None]:
    """``cfg`` trained by the one training loop (train/loop.py ``Loop``) without Ray: the config as a worker receives
    it (validated again from its raw form), each domain's patches cut by the data path's own ``cut_patches``
    (consecutive ids, as one pass of a Ray Data stream holds them), the validation pairs of ``load_domains``, MLflow
    (SQLite in the workdir) through the driver's ``Store`` and the workers' ``WorkerLogger``. Returns the loop's
    reports and the MLflow run id."""
    import json

    from raytrain.config import RunConfig, to_raw
    from raytrain.data.collection import load_domains
    from raytrain.data.pipeline import DOMAIN_CODES, cut_patches, resolve_augment
    from raytrain.tracking import Store, WorkerLogger
    from raytrain.train.loop import Loop, seed_everything

    cfg = RunConfig.model_validate(to_raw(cfg))
    seed_everything(cfg.seed * 1009)
    collection = load_domains(cfg)
    augment, _ = resolve_augment(cfg.data.patches.augment, collection)
    method = build_method(cfg, torch.device("cpu"))
    b, size = cfg.train.batch_size, cfg.data.patches.size

    def stream(name):
        dom, k = collection.domains[name], 0
        while True:
            ids = np.arange(k * b, (k + 1) * b)
            k += 1
            patches = cut_patches(ids, dom, size, augment, cfg.seed, DOMAIN_CODES[name])
            yield {key: torch.from_numpy(v) for key, v in patches.items()}

    session = LocalSession()
    with Store.of(cfg).run(cfg.name) as run:
        logger = WorkerLogger(run.info) if run else None
        loop = Loop(cfg, method, {d: stream(d) for d in method.domains}, collection.val, session, logger, None,
                    json.dumps(to_raw(cfg)))  # fmt: skip
        loop.run(0)
    return session.reports, run.run_id


def cpu_recipe_run() -> dict:
    """The background job of the suite (conftest.py ``Background``): the shortened CPU recipe's last report, its
    workdir (a temporary folder the test removes) and MLflow run id."""
    import tempfile

    torch.set_num_threads(1)  # scaling.cpus_per_worker of the recipe
    work = tempfile.mkdtemp(prefix="raytrain-lir-")
    reports, run_id = local_run(load_config("configs/lir_awgn_blind.yaml", [f"workdir={work}", *RECIPE_RUN]))
    return {"last": reports[-1], "workdir": work, "run_id": run_id}


@pytest.fixture(scope="module")
def recipe_run(request):
    """:func:`cpu_recipe_run`, computed by a background process the suite started at collection (conftest.py)."""
    import shutil

    result = request.config.stash[BACKGROUND].result("lir")
    yield result
    shutil.rmtree(result["workdir"], ignore_errors=True)


@pytest.mark.slow
@pytest.mark.timeout(900)  # its fixture may wait for the background job to finish
def test_the_cpu_recipe_beats_the_noisy_input_and_logs_every_loss(recipe_run, tmp_path):
    """configs/lir_awgn_blind.yaml (the CPU recipe) on the one training loop, shortened (RECIPE_RUN): the restored
    validation images above the noisy input's PSNR (20.61 dB against 19.58, 40 CPU-s; on one Ray Train worker 20.49
    in 72 CPU-s, on two 20.54 in 130); every loss of D and G in MLflow, and the validation grid. LIR on two ranks is
    pinned by tests/test_multiworker_state.py (the same weights and statistics on both ranks); the loop on Ray Train,
    its streams and MLflow logging by the Ray tests of the other methods (test_train.py, test_senm.py)."""
    import imageio.v3 as iio
    from mlflow.tracking import MlflowClient

    m = recipe_run["last"]
    assert m["step"] == 100 and m["skipped_steps"] == 0
    assert m["val_psnr"] > m["val_psnr_noisy"] + 0.5, m
    client = MlflowClient(f"sqlite:///{recipe_run['workdir']}/mlflow.db")
    run = client.get_run(recipe_run["run_id"])
    assert run.info.status == "FINISHED"
    expected = {f"train_g_{k}" for k in ("repr", "adv", "cc", "rec", "bc", "kl")} | {"train_d_repr", "train_d_domain"}
    assert expected <= set(run.data.metrics)
    assert [h.step for h in client.get_metric_history(run.info.run_id, "train_g_kl")] == [25, 50, 75, 100]
    grid = client.download_artifacts(run.info.run_id, "images/val_step0000100.png", str(tmp_path))
    h, w = iio.imread(grid).shape[:2]
    assert w == 4 * h + 3 * 4  # noisy | restored | clean | degraded clean, 4 px gaps


if __name__ == "__main__":  # the background job of the suite (conftest.py): its result as JSON on stdout
    import json

    print(json.dumps(cpu_recipe_run()))
