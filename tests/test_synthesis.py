"""Synthesis (`raytrain synthesize`), noise-eval, the checkpoint-kind checks, and the SeNM-VAE pipeline end to end."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from raytrain.cli import main
from raytrain.config import load_config, to_raw
from raytrain.errors import DataError, RaytrainError
from raytrain.methods import build_method
from raytrain.synthesis import FittedSource, VAESource, write_pairs, write_pairs_ray
from raytrain.train.checkpoint import save_checkpoint

TINY_SENM = [
    "method.name=senm", "method.width=8", "method.growth=4", "method.z_dim=4", "method.zn_dim=2",
    "method.level_net_width=4", "method.disc_width=4", "method.blocks_per_scale=[1,1]", "data.paired.count=2",
    "data.max_size=96", "data.val_crop=64", "data.patches.size=32", "data.noise.kind=camera",
]  # fmt: skip


@pytest.fixture(scope="module")
def senm_ckpt(tmp_path_factory):
    """A SeNM-VAE checkpoint (random weights) whose level reservoir saw levels 10..20 (0..255 scale)."""
    d = tmp_path_factory.mktemp("senm")
    cfg = load_config(None, [f"workdir={d / 'runs'}", *TINY_SENM])
    torch.manual_seed(0)
    m = build_method(cfg, torch.device("cpu"))
    m.nets["levels"].add(torch.linspace(10, 20, 16) / 255)
    with torch.no_grad():  # the output heads start at zero (a blank image); give them weights so z_n shows
        for p in m.nets["vae"].parameters():
            if not p.any():
                p.normal_(0, 0.05)
    (d / "ckpt").mkdir()
    save_checkpoint(d / "ckpt", m, 5, json.dumps(to_raw(cfg)), {})
    return d / "ckpt"


@pytest.fixture
def clean_dir(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "clean_in"
    d.mkdir()
    for i, shape in enumerate([(40, 40), (37, 50), (64, 33)]):  # sizes not a multiple of the VAE's stride
        iio.imwrite(d / f"img{i}.png", (rng.random(shape) * 255).astype(np.uint8))
    return d


def read(path):
    return iio.imread(path)


def test_synthesize_writes_same_names_shapes_and_a_manifest(senm_ckpt, clean_dir, tmp_path, capsys):
    out = tmp_path / "pairs"
    assert main(["synthesize", str(senm_ckpt), "--clean", str(clean_dir), "--out", str(out), "--level", "15"]) == 0
    names = sorted(p.name for p in clean_dir.iterdir())
    assert sorted(p.name for p in (out / "clean").iterdir()) == names
    assert sorted(p.name for p in (out / "noisy").iterdir()) == names
    for n in names:
        src, c, y = read(clean_dir / n), read(out / "clean" / n), read(out / "noisy" / n)
        assert c.shape == y.shape == src.shape and y.dtype == np.uint8
        np.testing.assert_array_equal(c, src)
        assert not np.array_equal(y, c)  # noise was added
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["count"] == 3 and manifest["source"]["level"] == 15 and manifest["source"]["kind"] == "senm"
    assert "data.synthetic=" in capsys.readouterr().out
    assert not list(tmp_path.glob(".pairs.partial*"))


def test_synthesis_is_seeded_and_the_level_changes_the_noise(senm_ckpt, clean_dir, tmp_path):
    imgs = [
        type("I", (), {"name": p.stem, "pixels": read(p)[..., None] / 255.0})() for p in sorted(clean_dir.iterdir())
    ]
    a = Path(write_pairs(imgs, VAESource(senm_ckpt, 12, seed=3), tmp_path / "a", progress=False))
    b = Path(write_pairs(imgs, VAESource(senm_ckpt, 12, seed=3), tmp_path / "b", progress=False))
    for n in ("img0.png", "img1.png", "img2.png"):
        np.testing.assert_array_equal(read(a / "noisy" / n), read(b / "noisy" / n))
    # (random weights: compare the float outputs, 8-bit rounding would hide the differences)
    x = imgs[1].pixels.astype(np.float32)
    ref = VAESource(senm_ckpt, 12, seed=3)(x, 0)
    np.testing.assert_array_equal(ref, VAESource(senm_ckpt, 12, seed=3)(x, 0))
    assert not np.array_equal(ref, VAESource(senm_ckpt, 12, seed=4)(x, 0))  # another seed
    assert not np.array_equal(ref, VAESource(senm_ckpt, 19, seed=3)(x, 0))  # another level
    assert not np.array_equal(ref, VAESource(senm_ckpt, 12, seed=3)(x, 1))  # another image index
    assert ref.shape == x.shape
    prior = Path(write_pairs(imgs, VAESource(senm_ckpt, None), tmp_path / "p", copies=2, progress=False))
    assert len(list((prior / "noisy").iterdir())) == 6 and (prior / "noisy" / "img0_1.png").is_file()


def test_level_outside_the_trained_range_is_refused(senm_ckpt, clean_dir, tmp_path, capsys):
    code = main(
        ["synthesize", str(senm_ckpt), "--clean", str(clean_dir), "--out", str(tmp_path / "o"), "--level", "60"]
    )
    err = capsys.readouterr().err
    assert code == 1 and "outside the trained range 10.0..20.0" in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("flag, value, message", [
    ("--level", "-40", "outside the trained range"),
    ("--level", "nan", "outside the trained range"),
    ("--temperature", "nan", "--temperature must be a finite number >= 0"),
    ("--temperature", "-1", "--temperature must be a finite number >= 0"),
])  # fmt: skip
def test_bad_levels_and_temperatures_are_one_line_errors(senm_ckpt, clean_dir, tmp_path, capsys, flag, value, message):
    code = main(["synthesize", str(senm_ckpt), "--clean", str(clean_dir), "--out", str(tmp_path / "o"), flag, value])
    err = capsys.readouterr().err
    assert code == 1 and message in err and err.count("\n") == 1 and not (tmp_path / "o").exists()


def test_temperature_zero_is_allowed(senm_ckpt, clean_dir, tmp_path):
    out = tmp_path / "t0"
    assert main(["synthesize", str(senm_ckpt), "--clean", str(clean_dir), "--out", str(out), "--temperature", "0",
                 "--level", "15"]) == 0  # fmt: skip
    assert json.loads((out / "manifest.json").read_text())["source"]["temperature"] == 0


@pytest.fixture(scope="module")
def floored_ckpt(tmp_path_factory):
    """A SeNM-VAE checkpoint whose last validation measured a content floor of 12 against real noise of std 10."""
    d = tmp_path_factory.mktemp("floored")
    cfg = load_config(None, [f"workdir={d / 'runs'}", *TINY_SENM, "method.synthesis=full"])
    m = build_method(cfg, torch.device("cpu"))
    m.nets["levels"].add(torch.linspace(10, 20, 16) / 255)
    save_checkpoint(d, m, 5, json.dumps(to_raw(cfg)), {"val_content_floor": 12.0, "val_noise_std_real": 10.0})
    return d


def test_full_synthesis_over_the_content_floor_is_refused_with_the_figures(floored_ckpt, clean_dir, tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["synthesize", str(floored_ckpt), "--clean", str(clean_dir), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "content floor 12.00 is 1.20 x the real noise std 10.00" in err and "max_content_floor=0.5" in err
    assert err.count("\n") == 1 and not out.exists()
    # residual synthesis cancels the content error; an explicit override also goes through
    args = ["synthesize", str(floored_ckpt), "--clean", str(clean_dir), "--out", str(out), "--mode", "residual"]
    assert main(args) == 0
    assert json.loads((out / "manifest.json").read_text())["source"]["mode"] == "residual"
    assert VAESource(floored_ckpt, allow_content_floor=True).describe()["content_floor_vs_real_std"] == [12.0, 10.0]


def test_a_denoiser_checkpoint_is_refused_by_synthesize_and_senm_by_denoise(trained, senm_ckpt, clean_dir, tmp_path,
                                                                           capsys):  # fmt: skip
    _, res = trained
    assert main(["synthesize", res.checkpoint, "--clean", str(clean_dir), "--out", str(tmp_path / "o")]) == 1
    assert "a dncnn checkpoint is a denoiser, not a noise model" in capsys.readouterr().err
    assert main(["denoise", str(senm_ckpt), str(clean_dir), str(tmp_path / "d")]) == 1
    assert "a senm checkpoint is a noise model, not a denoiser" in capsys.readouterr().err
    assert main(["noise-eval", res.checkpoint]) == 1


def test_nothing_is_half_written_and_a_full_folder_is_kept(clean_dir, tmp_path):
    imgs = [
        type("I", (), {"name": p.stem, "pixels": read(p)[..., None] / 255.0})() for p in sorted(clean_dir.iterdir())
    ]

    def broken(clean, i):
        if i == 2:
            raise RuntimeError("boom")
        return clean

    with pytest.raises(RuntimeError):
        write_pairs(imgs, broken, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.partial*"))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    with pytest.raises(DataError, match="exists and is not empty"):
        write_pairs(imgs, lambda c, i: c, tmp_path / "full", progress=False)
    assert (tmp_path / "full" / "keep.txt").read_text() == "x"


def test_fitted_baselines_write_pairs_and_unknown_names_clash(tmp_path):
    from raytrain.data.degrade import NoiseModel

    img = type("I", (), {"name": "a", "pixels": np.full((16, 16, 1), 0.5, np.float32)})()
    out = Path(write_pairs([img], FittedSource(NoiseModel("awgn", {"sigma": 10.0})), tmp_path / "g", progress=False))
    resid = read(out / "noisy" / "a.png").astype(float) - read(out / "clean" / "a.png")
    assert 7 < resid.std() < 13
    with pytest.raises(DataError, match="same name"):
        write_pairs([img, img], lambda c, i: c, tmp_path / "dup", progress=False)


def test_ray_data_synthesis_matches_the_in_process_files(ray_local, senm_ckpt, clean_dir, tmp_path):
    files = sorted(clean_dir.iterdir())
    out = Path(write_pairs_ray(files, str(senm_ckpt), tmp_path / "ray", level=14, seed=1, actors=1))
    imgs = [type("I", (), {"name": p.stem, "pixels": read(p)[..., None] / 255.0})() for p in files]
    ref = Path(write_pairs(imgs, VAESource(senm_ckpt, 14, seed=1), tmp_path / "ref", progress=False))
    for f in files:
        np.testing.assert_array_equal(read(out / "noisy" / f.name), read(ref / "noisy" / f.name))
    assert json.loads((out / "manifest.json").read_text())["count"] == 3


def test_noise_eval_prints_both_klds_and_the_baselines(senm_ckpt, capsys):
    assert main(["noise-eval", str(senm_ckpt), "--crop", "48"]) == 0
    out = capsys.readouterr().out
    assert "KLD resid." in out and "KLD noisy" in out and "AKLD" in out
    rows = [ln for ln in out.splitlines() if ln.startswith(("SeNM-VAE", "gaussian", "heteroscedastic", "real noise"))]
    assert len(rows) == 4 and "rows1   cols1   rows2   cols2     std    dark  bright" in out
    for ln in rows[:3]:
        kld, kld_noisy, akld, *corr, std, dark, bright = (float(v) for v in ln.split()[-10:])
        assert kld >= 0 and kld_noisy >= 0 and 0 <= akld < 5 and np.isfinite(kld) and std > 0
        assert len(corr) == 4 and all(-1 <= c <= 1 for c in corr) and dark > 0 and bright > 0
    real_corr = [float(v) for v in rows[3].split()[-7:-3]]  # the real noise's structure: its own values
    assert real_corr != [float(v) for v in rows[0].split()[-7:-3]] and all(-1 <= c <= 1 for c in real_corr)
    real_std, real_dark, real_bright = (float(v) for v in rows[3].split()[-3:])
    gauss = [float(v) for v in rows[1].split()[-3:]]  # the Gaussian baseline: one level everywhere
    assert real_dark != real_bright and gauss[1] == pytest.approx(gauss[0], rel=0.25)


def test_pipeline_section_validation(tmp_path):
    with pytest.raises(RaytrainError, match="needs method.name=senm"):
        load_config(None, ["pipeline.temperature=1.0"])
    with pytest.raises(RaytrainError, match="must be dncnn, drunet or rrdb"):
        load_config(None, [*TINY_SENM, "pipeline.downstream.method.name=senm"])
    with pytest.raises(RaytrainError, match="pipeline.arms"):
        load_config(None, [*TINY_SENM, "pipeline.arms=[senm,bogus]"])


# ------------------------------------------------------------------------------------------------------ FID
def test_inception_features_and_both_weight_files(tmp_path):
    from raytrain.nn.inception import InceptionV3Features, load_inception

    torch.manual_seed(0)
    tv = InceptionV3Features()
    x = torch.rand(2, 1, 40, 40)
    f = tv(x)
    assert f.shape == (2, 2048) and torch.isfinite(f).all()
    assert tv(x.repeat(1, 3, 1, 1)).allclose(f)  # gray is repeated to RGB
    state = tv.state_dict()
    # a torchvision file (1000-way fc, auxiliary classifier, no BN counters) loads with torchvision's pools
    extra = {"fc.weight": torch.zeros(1000, 2048), "AuxLogits.fc.weight": torch.zeros(1000, 768)}
    plain = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    torch.save(plain | extra, tmp_path / "inception_v3_google.pth")
    net = load_inception(tmp_path / "inception_v3_google.pth")
    assert not net.fid_tf and torch.allclose(net(x), f)
    # pytorch-fid's TensorFlow weights (1008-way fc) select the FID pools: same weights, other features
    torch.save(state | {"fc.weight": torch.zeros(1008, 2048)}, tmp_path / "pt_inception.pth")
    fid_net = load_inception(tmp_path / "pt_inception.pth")
    assert fid_net.fid_tf and not torch.allclose(fid_net(x), f)
    torch.save({k: v for k, v in plain.items() if "Mixed_7c" not in k}, tmp_path / "cut.pth")
    with pytest.raises(RaytrainError, match="cut.pth: not an Inception-v3 state dict .*Mixed_7c"):
        load_inception(tmp_path / "cut.pth")
    with pytest.raises(RaytrainError, match=r"nowhere.pth: no such file \(expected Inception-v3 weights"):
        load_inception(tmp_path / "nowhere.pth")


def test_noise_eval_adds_fid_with_an_inception_file(senm_ckpt, tmp_path, capsys):
    from raytrain.nn.inception import InceptionV3Features

    torch.manual_seed(0)
    torch.save(InceptionV3Features().state_dict(), tmp_path / "inception.pth")
    assert main(["noise-eval", str(senm_ckpt), "--crop", "32", "--inception", str(tmp_path / "inception.pth"),
                 "--fid-patch", "16"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "FID" in out.splitlines()[1]
    n_images = len(out.splitlines()[0].split("(")[1].split(")")[0].split(", "))  # the held-out images it names
    assert f"{4 * n_images} 16px tiles" in out  # crops of 32 -> 4 tiles each
    rows = [ln for ln in out.splitlines() if ln.startswith(("SeNM-VAE", "gaussian", "heteroscedastic"))]
    fids = [float(ln.split()[-1]) for ln in rows]
    assert len(fids) == 3 and all(np.isfinite(v) and v >= 0 for v in fids)
    assert main(["noise-eval", str(senm_ckpt), "--inception", str(tmp_path / "missing.pth")]) == 1
    assert "missing.pth: no such file (expected Inception-v3 weights" in capsys.readouterr().err


def test_the_pipeline_table_shows_the_noise_structure_per_axis_and_lag():
    """The pipeline's table: each arm's noise correlation along rows / columns at lag 1 and at lag 2 (one cell per
    lag), the real noise's in the note; a baseline without them a dash."""
    from raytrain.noise_pipeline import PipelineResult
    from raytrain.pipeline_report import markdown

    cfg = load_config(None, [*TINY_SENM, "pipeline.arms=[senm,real_pairs]"])
    common = {"psnr": 30.0, "psnr_std": 1.0, "ssim": 0.9, "psnr_noisy": 20.0, "ssim_noisy": 0.5}
    senm = {**common, "kld": 0.02, "kld_noisy": 0.03, "akld": 0.1, "noise_std": 10.0, "rho_h": 0.52, "rho_v": 0.11,
            "rho_h2": 0.25, "rho_v2": 0.01, "rho_h_real": 0.57, "rho_v_real": 0.12, "rho_h2_real": 0.3,
            "rho_v2_real": 0.02, "noise_std_dark": 12.5, "noise_std_bright": 8.25, "noise_std_dark_real": 14.0,
            "noise_std_bright_real": 7.0}  # fmt: skip
    md = markdown(PipelineResult({"senm": senm, "real_pairs": common}, None, None), cfg)
    head, _, row, other = md.splitlines()[:4]
    assert "| noise corr. rows / cols, lag 1 | lag 2 | noise std | std dark / bright |" in head
    assert "| 0.52 / 0.11 | 0.25 / 0.01 | 10.00 | 12.5 / 8.2 |" in row and row.startswith("| SeNM-VAE synthetic")
    assert "| – | – | – | – |" in other
    assert (
        "Real noise correlation rows / cols 0.57 / 0.12 at lag 1, 0.30 / 0.02 at lag 2; its std dark / bright "
        "14.0 / 7.0." in md
    )


def test_the_intensity_profile_is_the_noise_std_over_the_darkest_and_brightest_quarters():
    from raytrain.metrics import intensity_profile

    clean = np.linspace(0, 1, 400).reshape(20, 20, 1)
    noise = (
        np.where(clean <= 0.25, 4.0, np.where(clean >= 0.75, 1.0, 2.0))
        / 255
        * np.tile([1.0, -1.0], 200).reshape(20, 20, 1)
    )
    got = intensity_profile(noise, clean)
    assert got == pytest.approx({"noise_std_dark": 4.0, "noise_std_bright": 1.0}, rel=0.03)


@pytest.mark.slow
def test_the_pipeline_evaluation_as_a_ray_task_gives_the_rows_it_gives_here(ray_local, senm_ckpt, trained):
    """When the runs use GPUs and the driver has none, the evaluation runs as a Ray task (on a GPU node), the SeNM-VAE
    rebuilt there from its checkpoint: forced here with 0 GPUs, the same rows, noise samples and outputs."""
    from raytrain.config import load_config
    from raytrain.data.collection import load_domains
    from raytrain.noise_pipeline import evaluate_where, fitted_sources

    _, res = trained
    cfg = load_config(None, [*TINY_SENM, "pipeline.arms=[senm,gaussian]", "data.val_crop=32", "data.max_size=96"])
    col = load_domains(cfg)
    sources = {"senm": VAESource(senm_ckpt, None, 0.7, 3), "gaussian": fitted_sources(col, 0)["gaussian"]}
    ckpts = {"senm": res.checkpoint, "gaussian": res.checkpoint}
    here = evaluate_where(cfg, sources, ckpts, col.val, col.val)
    there = evaluate_where(cfg, sources, ckpts, col.val, col.val, gpus=0)  # a task, asking for no GPU
    # the same draws (seeded per arm); a task's torch may use another thread count: equal to float rounding
    assert here[0].keys() == there[0].keys() and here[0]["senm"]["kld"] > 0
    for arm, row in here[0].items():
        assert row == pytest.approx(there[0][arm], rel=1e-5, abs=1e-6), arm
    for a, b in zip(here[1]["senm"] + here[2]["senm"], there[1]["senm"] + there[2]["senm"], strict=True):
        assert np.allclose(a, b, atol=1e-5)


def test_a_16_bit_camera_gets_16_bit_pairs_and_8_bit_stays_8_bit(tmp_path):
    """Pairs written at 16 bits keep noise finer than an 8-bit step (the file is uint16, the levels within 1/65535);
    the default stays 8-bit; the pipeline reads the depth off the camera's real noisy images."""
    from raytrain.data.images import bit_depth, quantize

    rng = np.random.default_rng(0)
    clean = np.full((16, 16, 1), 128 / 255, np.float32)
    fine = (clean + rng.normal(0, 0.5 / 255, clean.shape)).astype(np.float32)  # half an 8-bit step
    img = type("I", (), {"name": "a", "pixels": clean})()
    deep = Path(write_pairs([img], lambda c, i: fine, tmp_path / "d", progress=False, bits=16))
    raw = iio.imread(deep / "noisy" / "a.png")
    assert raw.dtype == np.uint16
    np.testing.assert_allclose(raw / 65535.0, fine[..., 0], atol=0.5 / 65535 + 1e-7)
    assert json.loads((deep / "manifest.json").read_text())["bits"] == 16
    flat = Path(write_pairs([img], lambda c, i: fine, tmp_path / "f", progress=False))
    assert iio.imread(flat / "noisy" / "a.png").dtype == np.uint8
    assert len(np.unique(iio.imread(flat / "noisy" / "a.png"))) <= 5 < 100 < len(np.unique(raw))  # 8 bits: a few
    assert bit_depth([quantize(fine, 8), clean]) == 8
    assert bit_depth([quantize(fine, 8), quantize(fine, 16)]) == 16
    from types import SimpleNamespace

    from raytrain.layout import Pair
    from raytrain.noise_pipeline import camera_bits

    def camera(bits, val=True):
        noisy = quantize(fine, bits).astype(np.float32)
        paired = SimpleNamespace(noisy=[noisy])
        return SimpleNamespace(val=[Pair(clean, noisy)] if val else [], domains={"paired": paired})

    assert [camera_bits(camera(b, v)) for b in (8, 16) for v in (True, False)] == [8, 8, 16, 16]


def test_noise_rows_score_a_16_bit_camera_at_its_own_depth():
    """Real pairs from a 16-bit camera whose clean images sit on 8-bit levels (an 8-bit source scaled up, like the
    check-cols camera), scored against a synthesiser drawing the very same noise distribution: the residual KLD is
    ~0. Quantised to 8 bits, the synthetic residuals would sit on 1/255 steps wider than the histogram's bins, empty
    a third of them and drop the real mass there: KLD -0.1 (the bug this pins)."""
    from raytrain.data.images import quantize
    from raytrain.evaluate import noise_rows
    from raytrain.layout import to_image, to_tensor

    rng = np.random.default_rng(1)
    clean = quantize(rng.uniform(0.3, 0.7, (96, 96, 1)), 8).astype(np.float32)
    pairs = [(clean, quantize(clean + rng.normal(0, 0.03, clean.shape), 16).astype(np.float32)) for _ in range(2)]

    def same_noise(c, level):
        return to_tensor(to_image(c) + rng.normal(0, 0.03, clean.shape), c.device)

    rows = noise_rows(same_noise, pairs)
    assert all(0 <= r["kld"] < 0.01 for r in rows), [r["kld"] for r in rows]
    eight = [(c, quantize(n, 8).astype(np.float32)) for c, n in pairs]  # an 8-bit camera: still scored at 8 bits
    assert all(0 <= r["kld"] < 0.01 for r in noise_rows(same_noise, eight))
