import numpy as np
import pytest

from raytrain.config import load_config
from raytrain.data import degrade as dg
from raytrain.metrics import noise_correlation

FLAT = np.full((256, 256, 1), 0.5, np.float32)


def model(*overrides):
    return dg.noise_model(load_config(None, list(overrides)).data.noise)


def test_awgn_fixed_sigma_std_and_mean():
    noisy = model("data.noise.sigma=25")(FLAT, dg.rng_for(0))
    n = (noisy - FLAT) * 255
    assert abs(n.std() - 25) < 0.5 and abs(n.mean()) < 0.3
    assert noisy.dtype == np.float32 and noisy.shape == FLAT.shape


def test_awgn_blind_sigma_in_range_and_varies_per_image():
    m = model("data.noise.sigma=[5, 50]")
    stds = [((m(FLAT, dg.rng_for(0, i)) - FLAT) * 255).std() for i in range(40)]
    assert min(stds) > 4.5 and max(stds) < 51
    assert np.std(stds) > 5  # per-image levels, not one sigma


def test_seeded_and_deterministic():
    m = model("data.noise.kind=camera")
    a, b = m(FLAT, dg.rng_for(3, 1)), m(FLAT, dg.rng_for(3, 1))
    c = m(FLAT, dg.rng_for(3, 2))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize("level", [0.1, 0.5, 0.9])
def test_poisson_peak_variance_equals_mean_in_counts(level):
    peak = 30.0
    img = np.full((200, 200, 1), level, np.float32)
    counts = model("data.noise.kind=poisson", f"data.noise.peak={peak}")(img, dg.rng_for(1)) * peak
    assert counts.mean() == pytest.approx(level * peak, rel=0.02)
    assert counts.var() == pytest.approx(counts.mean(), rel=0.05)


def test_poisson_skimage_on_8bit_is_shot_noise_in_8bit_counts():
    # A full 8-bit ramp: skimage's random_noise(mode="poisson") then scales by 2**ceil(log2(256)) = 256 counts.
    img = (np.arange(200 * 200).reshape(200, 200, 1) % 256 / 255).astype(np.float32)
    noisy = model("data.noise.kind=poisson")(img, dg.rng_for(2))
    mid = (img > 0.2) & (img < 0.6)  # away from the clips at 0 and 1
    counts_in, resid = img[mid] * 256, (noisy[mid] - img[mid]) * 256
    assert abs(resid.mean()) < 0.2
    assert resid.var() == pytest.approx(counts_in.mean(), rel=0.08)


def test_poisson_gaussian_variance_adds():
    peak, sigma = 20.0, 10.0
    img = np.full((300, 300, 1), 0.5, np.float32)
    noisy = model("data.noise.kind=poisson_gaussian", f"data.noise.peak={peak}", f"data.noise.sigma={sigma}")(
        img, dg.rng_for(4)
    )
    expected = 0.5 / peak + (sigma / 255) ** 2
    assert (noisy - img).var() == pytest.approx(expected, rel=0.05)


def test_camera_presets_are_quantised_ordered_and_correlated():
    stds = {}
    for preset in ("low", "mid", "high"):
        noisy = model("data.noise.kind=camera", f"data.noise.preset={preset}")(FLAT, dg.rng_for(5))
        assert np.allclose(noisy * 255, np.round(noisy * 255), atol=1e-3)  # 8-bit levels
        assert noisy.min() >= 0 and noisy.max() <= 1
        stds[preset] = (noisy - FLAT).std()
        if preset == "mid":
            rho = noise_correlation(noisy - FLAT)
            assert rho["rho_h"] > 0.3 and rho["rho_v"] > 0.3
    assert stds["low"] < stds["mid"] < stds["high"]
    white = noise_correlation(model("data.noise.sigma=10")(FLAT, dg.rng_for(5)) - FLAT)
    assert abs(white["rho_h"]) < 0.02


def test_camera_noise_is_signal_dependent():
    m = model("data.noise.kind=camera", "data.noise.preset=high")
    dark, bright = np.full_like(FLAT, 0.15), np.full_like(FLAT, 0.85)
    # Shot noise grows with the signal in linear space (before the gamma compresses highlights).
    lin_dark = (m(dark, dg.rng_for(6)) ** 2.2 - dark**2.2).std()
    lin_bright = (m(bright, dg.rng_for(6)) ** 2.2 - bright**2.2).std()
    assert lin_bright > 2 * lin_dark


def test_correlated_field_has_unit_variance():
    f = dg.correlated_field((512, 512, 1), dg.rng_for(7), 0.8)
    assert f.std() == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize("kind", ["awgn", "poisson_gaussian"])
def test_clip_and_quantize_as_the_official_lir_data(kind):
    ramp = np.linspace(0, 1, 128 * 128, dtype=np.float32).reshape(128, 128, 1)
    sets = [f"data.noise.kind={kind}", "data.noise.sigma=50"]
    raw = model(*sets)(ramp, dg.rng_for(3))
    assert (raw < 0).mean() > 0.02 and (raw > 1).mean() > 0.02  # DnCNN's AWGN: unclipped (the default)
    clipped = model(*sets, "data.noise.clip=true")(ramp, dg.rng_for(3))
    np.testing.assert_array_equal(clipped, np.clip(raw, 0, 1))  # the same draw, clipped
    q = model(*sets, "data.noise.quantize=true")(ramp, dg.rng_for(3))
    np.testing.assert_allclose(q, np.round(np.clip(raw, 0, 1) * 255) / 255, atol=1e-7)
    assert len(np.unique(q)) <= 256 and q.min() >= 0 and q.max() <= 1 and q.dtype == np.float32


# ---------------------------------------------------------------------------------------- noise drawn on the device
@pytest.mark.parametrize(
    "overrides",
    [
        ["data.noise.sigma=25"],
        ["data.noise.sigma=[5, 50]"],
        ["data.noise.sigma=25", "data.noise.quantize=true"],
        ["data.noise.kind=poisson", "data.noise.peak=30"],
        ["data.noise.kind=poisson"],
        ["data.noise.kind=poisson_gaussian"],
        ["data.noise.kind=camera"],
        ["data.noise.kind=camera", "data.noise.preset=high"],
        "heteroscedastic",
    ],
)
def test_device_noise_has_the_numpy_models_statistics(overrides):
    """Each noise model drawn on a torch batch (data/device_noise.py, what a worker draws) against the numpy model
    of data/degrade.py on the same clean patches: the same std and mean at a dark and a bright level (signal
    dependence), the same spread of per-patch levels (blind AWGN), the same lag-1 correlation along rows and columns
    (the camera's correlated field)."""
    import torch

    from raytrain.data.device_noise import add_noise, generator

    hetero = dg.NoiseModel("heteroscedastic", {"a": 0.01, "b": 1e-4})
    m = hetero if overrides == "heteroscedastic" else model(*overrides)
    for level in (0.2, 0.7):
        clean = np.full((256, 32, 32, 1), level, np.float32)
        ref = np.stack([m(c, dg.rng_for(3, i)) for i, c in enumerate(clean)]) - clean
        x = torch.from_numpy(clean).permute(0, 3, 1, 2)
        got = add_noise(m, x, generator(torch.device("cpu"), 3)).permute(0, 2, 3, 1).numpy() - clean
        blind = isinstance(m.params.get("sigma"), (list, tuple))  # a level per patch: the pooled std varies more
        assert got.std() == pytest.approx(ref.std(), rel=0.08 if blind else 0.04), (level, got.std(), ref.std())
        assert abs(got.mean() - ref.mean()) < 0.1 * ref.std() + 1e-3, (level, got.mean(), ref.mean())
        assert np.std(got.std(axis=(1, 2, 3))) == pytest.approx(np.std(ref.std(axis=(1, 2, 3))), rel=0.25, abs=2e-4)
        rg, rr = noise_correlation(got[..., 0].reshape(-1, 32)), noise_correlation(ref[..., 0].reshape(-1, 32))
        assert abs(rg["rho_h"] - rr["rho_h"]) < 0.05 and abs(rg["rho_v"] - rr["rho_v"]) < 0.05, (rg, rr)


def _binned_pairs(std_of, n=6, size=64, seed=0):
    """Pairs of smooth-ramp clean images and noisy ones whose noise std is ``std_of(clean)``."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        clean = np.tile(np.linspace(0.05, 0.95, size, dtype=np.float32), (size, 1))[..., None]
        out.append((clean, (clean + std_of(clean) * rng.standard_normal(clean.shape)).astype(np.float32)))
    return out


def test_fit_heteroscedastic_recovers_a_poisson_gaussian_line():
    m = dg.fit_heteroscedastic(_binned_pairs(lambda c: np.sqrt(0.004 * c + 0.0004)))
    assert m.params["a"] == pytest.approx(0.004, rel=0.1) and m.params["b"] == pytest.approx(0.0004, rel=0.3)


def test_fit_heteroscedastic_is_flat_at_the_mean_variance_when_the_noise_falls_with_the_signal():
    """A tone curve's darks: the variance falls with the clean value. The constrained fit is the best flat model (the
    mean variance), not the unconstrained line's intercept (the darks' variance) with its slope cut to 0."""
    pairs = _binned_pairs(lambda c: np.sqrt(0.01 * (1.0 - c) + 0.001))  # variance 0.0105 at 0.05, 0.0015 at 0.95
    m = dg.fit_heteroscedastic(pairs)
    pooled = float(np.mean([np.var(n - c) for c, n in pairs]))
    assert m.params["a"] == 0.0 and m.params["b"] == pytest.approx(pooled, rel=0.05)
    assert m.params["b"] < 0.008  # the intercept would be ~0.0105
