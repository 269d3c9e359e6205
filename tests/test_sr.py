"""Super-resolution (SeNM-VAE Sec. 4.6, Tables 4-5): (HR, LR) data at a scale, the RRDB / ESRGAN method, the SR arms
of the pipeline. Known answers on tiny inputs: which patch covers which, which net sees which tensor, the loss terms
and their weights."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from raytrain.config import load_config
from raytrain.data.collection import DomainImages, load_domains, tile_images
from raytrain.data.pipeline import cut_patches
from raytrain.data.resize import bicubic_down, bicubic_up, centre_crop_pair, mod_crop
from raytrain.errors import RaytrainError
from raytrain.losses.adversarial import ragan_d, ragan_g

TINY_RRDB = ["method.name=rrdb", "method.width=8", "method.blocks=1", "method.growth=4", "data.scale=2",
             "data.max_size=128", "data.val_crop=32", "data.patches.size=16", "train.batch_size=4"]  # fmt: skip


def box_down(img: np.ndarray, s: int) -> np.ndarray:
    """Mean of each s x s block of an (H, W, C) image: commutes with the dihedral transforms of aligned blocks."""
    h, w, c = img.shape
    return img.reshape(h // s, s, w // s, s, c).mean(axis=(1, 3))


# ------------------------------------------------------------------------------------------------------ resampling
def test_bicubic_down_keeps_a_constant_and_samples_a_ramp_at_the_lr_pixel_centres():
    assert np.allclose(bicubic_down(np.full((16, 12, 1), 0.3, np.float32), 2), 0.3, atol=1e-6)
    ramp = np.tile(np.arange(32, dtype=np.float32)[None, :, None] / 64, (8, 1, 1))  # value = column / 64
    low = bicubic_down(ramp, 4)
    assert low.shape == (2, 8, 1)
    # a symmetric kernel that sums to 1 reproduces a linear function inside the image: LR column j's centre is at
    # HR coordinate 4j + 1.5
    assert np.allclose(low[0, 2:6, 0], (4 * np.arange(2, 6) + 1.5) / 64, atol=1e-5)
    with pytest.raises(ValueError, match="not a multiple of the scale"):
        bicubic_down(np.zeros((9, 8, 1), np.float32), 2)
    assert mod_crop(np.zeros((9, 11, 1)), 4).shape == (8, 8, 1)
    up = bicubic_up(torch.full((1, 1, 4, 4), 0.5), (8, 8))
    assert up.shape == (1, 1, 8, 8) and torch.allclose(up, torch.tensor(0.5))


def test_sr_patches_tiles_and_centre_crops_cover_their_lr_part_exactly():
    rng = np.random.default_rng(0)
    hr = [rng.random((40, 48, 1)).astype(np.float32), rng.random((24, 32, 1)).astype(np.float32)]
    lr = [box_down(h, 2) for h in hr]
    dom = DomainImages(hr, lr, scale=2)
    out = cut_patches(np.arange(64), dom, 8, "dihedral", 0, 1)
    assert out["clean"].shape == (64, 1, 16, 16) and out["noisy"].shape == (64, 1, 8, 8)
    for c, n in zip(out["clean"], out["noisy"], strict=True):
        assert np.allclose(box_down(c.transpose(1, 2, 0), 2), n.transpose(1, 2, 0), atol=1e-6)
    # a clean-only (source) domain cuts HR patches of the same size from the same LR grid
    src = cut_patches(np.arange(8), DomainImages(clean=hr, scale=2), 8, "none", 0, 2)
    assert set(src) == {"clean"} and src["clean"].shape == (8, 1, 16, 16)
    ct, nt = tile_images(hr, lr, 8, 2)
    assert len(ct) == 2 * 3 + 1 * 2  # LR 20 x 24 and 12 x 16 in 8 px tiles
    assert all(c.shape == (16, 16, 1) for c in ct)
    assert all(np.allclose(box_down(c, 2), n) for c, n in zip(ct, nt, strict=True))
    c, n = centre_crop_pair(hr[0], lr[0], 7, 2)  # odd LR sizes: the HR crop still starts at 2x the LR offset
    assert n.shape == (7, 7, 1) and c.shape == (14, 14, 1) and np.allclose(box_down(c, 2), n)


def test_image_sources_degrade_bicubic_then_noise_and_downscale_clean_gives_the_noise_models_pairs(tmp_path):
    base = [f"workdir={tmp_path}", *TINY_RRDB, "data.noise.sigma=0", "data.val_images=2"]
    col = load_domains(load_config(None, base))
    paired = col.domains["paired"]
    assert paired.scale == 2 and col.domains["source"].scale == 2
    for c, n in zip(paired.clean, paired.noisy, strict=True):
        assert c.shape[0] == 2 * n.shape[0] and c.shape[1] == 2 * n.shape[1]
        assert np.allclose(bicubic_down(c, 2), n, atol=1e-6)  # sigma 0: the LR image is B(HR)
    assert all(v.clean.shape[:2] == (64, 64) and v.noisy.shape[:2] == (32, 32) for v in col.val)
    noisy = load_domains(load_config(None, [*base, "data.noise.sigma=10"])).domains["paired"]
    resid = np.concatenate([(n - bicubic_down(c, 2)).ravel() for c, n in zip(noisy.clean, noisy.noisy, strict=True)])
    assert resid.std() * 255 == pytest.approx(10, rel=0.05)
    low = load_domains(load_config(None, [*base, "method.name=senm", "data.downscale_clean=true"]))
    assert low.domains["paired"].scale == 1
    for c, c_hr, n in zip(low.domains["paired"].clean, paired.clean, low.domains["paired"].noisy, strict=True):
        assert c.shape == n.shape and np.allclose(c, bicubic_down(c_hr, 2), atol=1e-6)


def test_an_sr_dataset_reaches_the_domains_and_validation_pairs_stay_aligned(tmp_path):
    import imageio.v3 as iio

    rng = np.random.default_rng(3)
    for i in range(6):
        hr = (rng.random((64, 48)) * 255).astype(np.uint8)
        lr = (box_down(hr[..., None].astype(np.float64), 4)[..., 0]).round().astype(np.uint8)
        for role, img in (("HR", hr), ("LR", lr)):
            (tmp_path / "set" / role).mkdir(parents=True, exist_ok=True)
            iio.imwrite(tmp_path / "set" / role / f"im{i}.png", img)
    cfg = load_config(None, [f"workdir={tmp_path}", *TINY_RRDB, f"data.source=sr:{tmp_path / 'set'}", "data.scale=4",
                             "data.patches.size=8", "data.val_crop=16", "data.val_images=2"])  # fmt: skip
    col = load_domains(cfg)
    assert len(col.val) == 2 and sum(len(d) for d in col.domains.values()) == 4
    for c, n in col.val:
        assert c.shape == (64, 48, 1) and n.shape == (16, 12, 1)
        assert np.abs(box_down(c, 4) - n).max() <= 0.5 / 255 + 1e-6  # the LR crop is the HR crop's 4x4 means


def test_listed_split_pairs_the_first_images_and_unpaired_folders_join_their_domains(tmp_path):
    """AIM19 / NTIRE20 as the paper uses them: the first 10 of the 100 validation pairs paired, the other 90 scored
    (``split_order: listed``), the challenge's own clean HR and degraded LR sets as the unpaired domains."""
    import imageio.v3 as iio

    from raytrain.data.domains import hold_out

    assert hold_out(10, 3, 0, order="listed") == ([7, 8, 9], [0, 1, 2, 3, 4, 5, 6])
    rng = np.random.default_rng(6)
    for i in range(6):
        hr = (rng.random((32, 32)) * 255).astype(np.uint8)
        for role, img in (("HR", hr), ("LR", hr[::2, ::2])):
            (tmp_path / "val" / role).mkdir(parents=True, exist_ok=True)
            iio.imwrite(tmp_path / "val" / role / f"v{i}.png", img)
    for folder, size, count in (("div2k", 70, 3), ("degraded", 20, 2)):
        (tmp_path / folder).mkdir()
        for i in range(count):
            iio.imwrite(tmp_path / folder / f"u{i}.png", (rng.random((size, size)) * 255).astype(np.uint8))
    base = [f"workdir={tmp_path}", *TINY_RRDB, f"data.source=sr:{tmp_path / 'val'}", "data.split_order=listed",
            "data.paired.count=2", "data.val_images=3", "data.patches.size=8", "data.val_crop=16",
            f"data.clean_only={tmp_path / 'div2k'}", f"data.noisy_only={tmp_path / 'degraded'}"]  # fmt: skip
    col = load_domains(load_config(None, base))
    assert col.val_names == ["v3", "v4", "v5"] and col.split.paired == [0, 1]
    assert len(col.domains["source"]) == 0 + 3 and len(col.domains["target"]) == 1 + 2  # v2 split, then the folders
    assert [c.shape for c in col.domains["source"].clean] == [(70, 70, 1)] * 3  # HR, not resized, within the scale
    tiled = load_domains(load_config(None, [*base, "data.tiles=8", "data.val_images=1", "data.paired.count=4"]))
    src = tiled.domains["source"].clean  # 70 px HR -> 4 x 4 tiles of 16 px each (LR tiles of 8 at scale 2)
    assert all(c.shape == (16, 16, 1) for c in src) and len(src) >= 3 * 16


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["data.scale=2"], "data.scale=2: method dncnn trains on same-size pairs"),
        (["data.downscale_clean=true"], "downscale_clean: only with data.scale > 1"),
        (["data.source=sr:/x"], "data.source 'sr:/x' needs data.scale > 1"),
        (["data.source=sidd:/x", "data.scale=2", "method.name=rrdb"], "scale: 2 is for SR sources"),
        (["method.name=rrdb", "data.scale=2", "data.downscale_clean=true"], "drop it for method rrdb"),
        (["method.name=rrdb", "data.scale=2", "data.resample_noise=true"], "resample_noise: not with data.scale"),
        (["method.name=rrdb", "method.pixel_weight=0"], "nothing to learn"),
        (["method.name=rrdb", "method.perceptual=vgg"], "needs method.perceptual_weights"),
        (["method.name=rrdb", "data.scale=9"], "scale"),
        (["method.name=senm", "pipeline.downstream.method.name=rrdb"], "rrdb goes with data.scale > 1"),
        (["method.name=senm", "data.scale=2"], "data.scale=2: method senm trains on same-size pairs"),
        (["method.name=senm", "data.scale=2", "pipeline.arms=[senm]"], "dncnn / drunet with data.scale 1"),
        (["method.name=senm", "pipeline.arms=[senm,bicubic]"], "bicubic is the super-resolution baseline"),
        (
            [
                "method.name=senm",
                "data.scale=2",
                "pipeline.downstream.method.name=rrdb",
                "pipeline.lpips.backbone=a.pth",
            ],
            "pipeline.lpips.lin",
        ),
    ],
)
def test_bad_sr_configs_are_one_line_naming_the_key(sets, message):
    with pytest.raises(RaytrainError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config(None, sets)


# ------------------------------------------------------------------------------------------------------ RRDB
@pytest.mark.parametrize("scale", [1, 2, 3, 4])
def test_rrdb_outputs_scale_times_its_input(scale):
    from raytrain.methods.sr.nets import RRDBNet

    net = RRDBNet(3, scale, width=8, blocks=1, growth=4)
    assert net(torch.rand(2, 3, 6, 5)).shape == (2, 3, 6 * scale, 5 * scale)
    res = RRDBNet(1, scale, width=8, blocks=1, growth=4, residual="bicubic")
    torch.nn.init.zeros_(res.tail.weight), torch.nn.init.zeros_(res.tail.bias)
    x = torch.rand(1, 1, 6, 5)  # a zero correction leaves exactly the bicubic up-sampling
    assert torch.allclose(res(x), F.interpolate(x, scale_factor=scale, mode="bicubic"))


def test_rrdb_rejects_a_scale_it_cannot_upsample(tmp_path):
    from raytrain.methods import build_method

    cfg = load_config(None, [*TINY_RRDB, "data.scale=5"])
    with pytest.raises(RaytrainError, match="data.scale=5: RRDB up-samples by 1, 2, 3, 4 or 8"):
        build_method(cfg, torch.device("cpu"))


def _rrdb(*extra: str):
    from raytrain.methods import build_method

    torch.manual_seed(0)
    return build_method(load_config(None, [*TINY_RRDB, *extra]), torch.device("cpu"))


def _sr_batch(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    hr = torch.rand(4, 1, 32, 32, generator=g)
    return {"paired": {"clean": hr, "noisy": F.avg_pool2d(hr, 2) + 0.02 * torch.randn(4, 1, 16, 16, generator=g)}}


def test_rrdb_step_pixel_term_is_l1_of_the_sr_output_to_the_hr_patch_and_descends():
    method = _rrdb("method.pixel_weight=0.5", "train.lr=2e-3")
    batch = _sr_batch()
    before = copy.deepcopy(method.nets["sr"])
    out = method.train_step(batch, 0)
    want = F.l1_loss(before(batch["paired"]["noisy"]), batch["paired"]["clean"])
    assert out.losses["pixel"] == pytest.approx(float(want), rel=1e-5)
    assert out.losses["loss"] == pytest.approx(0.5 * float(want), rel=1e-5)
    assert set(out.losses) == {"pixel", "loss"} and not out.skipped
    for step in range(1, 40):
        last = method.train_step(batch, step)
    assert last.losses["pixel"] < 0.7 * out.losses["pixel"]  # the update goes down the loss, not up
    l2 = _rrdb("method.pixel_loss=l2").train_step(batch, 0)
    assert l2.losses["pixel"] == pytest.approx(float(F.mse_loss(before(batch["paired"]["noisy"]),
                                                                batch["paired"]["clean"])), rel=1e-5)  # fmt: skip


def test_rrdb_gan_step_real_is_hr_fake_is_the_sr_output_and_weights_sum_the_terms():
    method = _rrdb("method.gan_weight=0.25", "method.pixel_weight=2", "method.perceptual=lpips", "method.disc_width=4",
                   "method.perceptual_backbone=random", "method.perceptual_weight=3")  # fmt: skip
    batch = _sr_batch(1)
    lr, hr = batch["paired"]["noisy"], batch["paired"]["clean"]
    gen0, disc0 = copy.deepcopy(method.nets["sr"]), copy.deepcopy(method.nets["disc"])
    seen: list[torch.Tensor] = []
    method.nets["disc"].register_forward_pre_hook(lambda mod, args: seen.append(args[0].detach().clone()))
    out = method.train_step(batch, 0)
    with torch.no_grad():
        sr = gen0(lr)
        pixel = F.l1_loss(sr, hr)
        perc = method.perceptual(sr.clamp(0, 1), hr).mean()
        gan = ragan_g(disc0(hr), disc0(sr))
        d_loss = ragan_d(disc0(hr), disc0(sr))
    # generator step: D(real = HR), D(fake = G(LR)); discriminator step: the same two, the fake detached
    assert len(seen) == 4
    assert torch.equal(seen[0], hr) and torch.equal(seen[2], hr)
    assert torch.allclose(seen[1], sr, atol=1e-6) and torch.allclose(seen[3], sr, atol=1e-6)
    assert out.losses["pixel"] == pytest.approx(float(pixel), rel=1e-5)
    assert out.losses["perceptual"] == pytest.approx(float(perc), rel=1e-5)
    assert out.losses["gan"] == pytest.approx(float(gan), rel=1e-5)
    assert out.losses["d_loss"] == pytest.approx(float(d_loss), rel=1e-5)
    assert out.losses["loss"] == pytest.approx(2 * float(pixel) + 3 * float(perc) + 0.25 * float(gan), rel=1e-5)
    # the discriminator moved only through its own step: the generator's step left it frozen (no grads kept)
    assert all(p.requires_grad for p in method.nets["disc"].parameters())
    assert any(not torch.equal(a, b) for a, b in zip(method.nets["disc"].parameters(), disc0.parameters(),
                                                      strict=True))  # fmt: skip


def test_rrdb_init_from_loads_a_previous_runs_generator(tmp_path):
    from raytrain.train.checkpoint import export_inference

    first = _rrdb()
    export_inference(tmp_path / "model.pt", first, first.cfg.model_dump_json())
    second = _rrdb(f"method.init_from={tmp_path / 'model.pt'}", "method.gan_weight=0.1")
    assert all(torch.equal(a, b) for a, b in zip(first.nets["sr"].state_dict().values(),
                                                  second.nets["sr"].state_dict().values(), strict=True))  # fmt: skip
    with pytest.raises(RaytrainError, match="method.init_from: .* not found"):
        from raytrain.config import check_weight_files

        check_weight_files(load_config(None, [*TINY_RRDB, f"method.init_from={tmp_path / 'nope'}"]))
    with pytest.raises(RaytrainError, match="does not fit|do not fit"):
        _rrdb(f"method.init_from={tmp_path / 'model.pt'}", "method.width=12")


# -------------------------------------------------------------------------------------------------- evaluation
def test_sr_evaluation_scores_the_bicubic_upscaled_input_and_lpips():
    from raytrain.config.run import LPIPSFiles
    from raytrain.evaluate import evaluate_pairs
    from raytrain.metrics import psnr
    from raytrain.sr_pipeline import build_lpips

    rng = np.random.default_rng(4)
    hr = rng.random((32, 32, 1)).astype(np.float32)
    lr = bicubic_down(hr, 2)
    lpips = build_lpips(LPIPSFiles(backbone="random"))
    (row,) = evaluate_pairs(lambda x: bicubic_up(x, (32, 32)), [(hr, lr)], lpips=lpips)
    ref = psnr(bicubic_up(torch.tensor(lr).permute(2, 0, 1)[None], (32, 32)), torch.tensor(hr).permute(2, 0, 1)[None])
    assert row["psnr_noisy"] == pytest.approx(float(ref), rel=1e-6) and row["psnr"] == pytest.approx(row["psnr_noisy"])
    assert row["lpips"] == pytest.approx(row["lpips_noisy"]) and row["lpips"] > 0
    (perfect,) = evaluate_pairs(lambda x: torch.tensor(hr).permute(2, 0, 1)[None], [(hr, lr)], lpips=lpips)
    assert perfect["lpips"] == pytest.approx(0, abs=1e-6) and perfect["psnr"] > 90


def test_tiled_restores_an_sr_net_piecewise_exactly():
    from raytrain.evaluate import tiled

    def up(x):  # nearest-neighbour x2: each output pixel depends on one input pixel
        return F.interpolate(x, scale_factor=2, mode="nearest")

    x = torch.rand(1, 1, 40, 37)
    assert torch.equal(tiled(up, tile=16, overlap=4)(x), up(x))


# ---------------------------------------------------------------------------------------------------- pipeline
def test_sr_noise_sources_apply_the_noise_to_the_bicubic_downscaled_hr_image():
    from raytrain.sr_pipeline import Downscaled, lr_view, sr_sources

    rng = np.random.default_rng(5)
    hr = rng.random((16, 16, 1)).astype(np.float32)
    seen = []

    class Spy:
        def describe(self):
            return {"kind": "spy"}

        def __call__(self, clean, index):
            seen.append((clean, index))
            return clean + 0.5

    out = sr_sources({"gaussian": Spy()}, 2, ("gaussian", "bicubic"))
    assert set(out) == {"gaussian", "bicubic"}
    assert np.allclose(out["gaussian"](hr, 7), bicubic_down(hr, 2) + 0.5)
    assert np.allclose(seen[0][0], bicubic_down(hr, 2)) and seen[0][1] == 7
    assert np.allclose(out["bicubic"](hr, 0), bicubic_down(hr, 2))  # the bicubic-only arm: no noise
    assert out["gaussian"].describe() == {"kind": "spy", "downscale": "bicubic x2"}
    assert Downscaled(None, 2).describe()["kind"] == "none"
    assert sr_sources({"gaussian": Spy()}, 1, ("gaussian",))["gaussian"].__class__ is Spy

    cfg = load_config(None, [*TINY_RRDB, "data.noise.sigma=5", "data.val_images=2"])
    col = load_domains(cfg)
    low = lr_view(col, 2)
    for c, c_low, n in zip(col.domains["paired"].clean, low.domains["paired"].clean, low.domains["paired"].noisy,
                           strict=True):  # fmt: skip
        assert c_low.shape == n.shape and np.allclose(c_low, bicubic_down(c, 2))
    assert all(p.clean.shape == p.noisy.shape for p in low.val)


@pytest.mark.slow
def test_sr_pipeline_trains_the_noise_model_on_the_lr_view_and_rrdb_arms_on_hr_lr_pairs(ray_local, tmp_path):
    from PIL import Image as PILImage

    from raytrain.noise_pipeline import run_pipeline
    from tests.test_synthesis import TINY_SENM

    cfg = load_config(None, [
        f"workdir={tmp_path / 'runs'}", *TINY_SENM, "name=srpipe", "data.scale=2", "data.max_size=128",
        "data.tiles=32", "data.patches.size=32", "data.val_crop=32", "data.paired.count=4", "data.val_images=2",
        "train.steps=4", "train.val_every=4", "train.checkpoint_every=4", "scaling.num_workers=1",
        "train.batch_size=4", "pipeline.arms=[senm,bicubic,real_pairs]", "pipeline.downstream.method.name=rrdb",
        "pipeline.downstream.method.width=8", "pipeline.downstream.method.blocks=1",
        "pipeline.downstream.method.growth=4", "pipeline.downstream.patches.size=8",
        "pipeline.downstream.train.steps=4", "pipeline.downstream.train.val_every=4",
        "pipeline.downstream.train.checkpoint_every=4", "pipeline.downstream.train.batch_size=4",
        "pipeline.lpips.backbone=random", "method.prior=colored", "method.likelihood=sample",
    ])  # fmt: skip
    res = run_pipeline(cfg)
    assert list(res.rows) == ["senm", "bicubic", "real_pairs"]
    assert "kld" in res.rows["senm"] and "kld" not in res.rows["bicubic"]
    assert all(np.isfinite(r["psnr"]) and np.isfinite(r["lpips"]) for r in res.rows.values())
    table = (res.out / "table.md").read_text()
    assert "rrdb LPIPS" in table and "Super-resolution x2" in table and "bicubic-only synthetic" in table
    assert (res.out / "sr_samples.png").stat().st_size > 1000  # LR | each arm's output | HR
    for arm in ("senm", "bicubic"):  # synthetic pairs: an HR clean image and its LR image at half the size
        folder = res.out / f"synthetic-{arm}"
        name = sorted((folder / "clean").iterdir())[0].name
        (w, h), (lw, lh) = (PILImage.open(folder / d / name).size for d in ("clean", "noisy"))
        assert (w, h) == (2 * lw, 2 * lh)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    noise = client.get_run(res.runs["noise_model"])
    assert noise.data.params["data.downscale_clean"] == "True" and noise.data.params["data.scale"] == "2"
    down = client.get_run(res.runs["downstream/senm"])
    assert down.data.params["method.name"] == "rrdb" and down.data.params["data.downscale_clean"] == "False"


def test_the_classical_baseline_of_an_sr_table_is_the_bicubic_upsampling():
    from raytrain.baselines import classical_rows

    rng = np.random.default_rng(7)
    hr = rng.random((32, 32, 1)).astype(np.float32)
    rows = classical_rows([(hr, bicubic_down(hr, 2))], None, scale=2)
    assert list(rows) == ["bicubic"]
    (row,) = rows["bicubic"]
    assert row["psnr"] == pytest.approx(row["psnr_noisy"]) and 5 < row["psnr"] < 60


def test_eval_and_denoise_of_an_sr_model_score_and_write_hr_images(tmp_path, capsys):
    import imageio.v3 as iio

    from raytrain.cli import main
    from raytrain.train.checkpoint import export_inference

    method = _rrdb("data.noise.sigma=0", "method.residual=bicubic")
    torch.nn.init.zeros_(method.nets["sr"].tail.weight), torch.nn.init.zeros_(method.nets["sr"].tail.bias)
    export_inference(tmp_path / "model.pt", method, method.cfg.model_dump_json())  # = bicubic up-sampling
    rng = np.random.default_rng(8)
    (tmp_path / "imgs").mkdir()
    for i in range(2):
        iio.imwrite(tmp_path / "imgs" / f"a{i}.png", (rng.random((41, 50)) * 255).astype(np.uint8))
    assert main(["eval", str(tmp_path / "model.pt"), "--data", str(tmp_path / "imgs"), "--crop", "16"]) == 0
    out = capsys.readouterr().out
    rows = [ln.split() for ln in out.splitlines() if ln.startswith("a")]
    assert len(rows) == 2 and all(float(r[1]) == pytest.approx(float(r[2]), abs=0.01) for r in rows)
    assert main(["denoise", str(tmp_path / "model.pt"), str(tmp_path / "imgs"), str(tmp_path / "sr")]) == 0
    assert iio.imread(tmp_path / "sr" / "a0.png").shape == (82, 100)  # x2


def test_a_training_run_starts_from_an_sr_dataset_and_validates_against_bicubic(ray_local, tmp_path):
    import imageio.v3 as iio

    from raytrain.evaluate import evaluate_pairs
    from raytrain.train.launch import run_training

    rng = np.random.default_rng(9)
    for cam in ("Canon", "Nikon", "Sony"):  # RealSR V3's layout: one folder per camera, HR beside LR2
        for i in range(2):
            hr = (rng.random((48, 40)) * 255).astype(np.uint8)
            folder = tmp_path / "realsr" / cam / "Train" / "2"
            folder.mkdir(parents=True, exist_ok=True)
            iio.imwrite(folder / f"{cam}_{i:03d}_HR.png", hr)
            iio.imwrite(folder / f"{cam}_{i:03d}_LR2.png", hr[::2, ::2])
    cfg = load_config(None, [f"workdir={tmp_path}", "name=sr", *TINY_RRDB, f"data.source=sr:{tmp_path / 'realsr'}",
                             "data.patches.size=8", "data.val_crop=16", "data.val_images=1", "train.steps=4",
                             "train.val_every=4", "train.checkpoint_every=4", "scaling.num_workers=1",
                             "tracking.enabled=false"])  # fmt: skip
    res = run_training(cfg)
    assert res.metrics["step"] == 4 and np.isfinite(res.metrics["val_psnr"])
    val = load_domains(cfg).val  # one held-out camera: its 2 (HR, LR) pairs
    assert len(val) == 2 and all(c.shape == (32, 32, 1) and n.shape == (16, 16, 1) for c, n in val)
    want = np.mean([r["psnr_noisy"] for r in evaluate_pairs(lambda t: bicubic_up(t, (32, 32)), val)])
    assert res.metrics["val_psnr_noisy"] == pytest.approx(want, abs=1e-3)
