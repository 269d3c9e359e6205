import numpy as np
import pytest
import torch
from scipy.stats import entropy
from skimage import data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from raytrain import metrics as M

RNG = np.random.default_rng(0)


def _t(a):
    a = a[..., None] if a.ndim == 2 else a
    return torch.tensor(a.transpose(2, 0, 1))[None]


@pytest.mark.parametrize("rgb", [False, True])
def test_psnr_ssim_match_skimage(rgb):
    clean = (data.astronaut() if rgb else data.camera())[:96, :112] / 255.0
    noisy = np.clip(clean + RNG.normal(0, 0.08, clean.shape), 0, 1)
    kw = {"channel_axis": -1} if rgb else {}
    want_ssim = structural_similarity(noisy, clean, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                      use_sample_covariance=False, **kw)  # fmt: skip
    assert float(M.ssim(_t(noisy), _t(clean))) == pytest.approx(want_ssim, abs=1e-6)
    assert float(M.psnr(_t(noisy), _t(clean))) == pytest.approx(peak_signal_noise_ratio(clean, noisy, data_range=1))


def test_psnr_data_range_and_identity():
    x = torch.rand(2, 1, 16, 16)
    assert float(M.psnr(x * 255, (x + 0.01) * 255, 255)[0]) == pytest.approx(40.0, abs=1e-4)
    assert float(M.ssim(x, x)[0]) == pytest.approx(1.0)


def test_noisy_histogram_kld_matches_official_formula():
    real = np.clip(0.5 + RNG.normal(0, 0.1, (64, 64)), 0, 1)
    gen = np.clip(0.5 + RNG.normal(0, 0.12, (64, 64)), 0, 1)
    h1 = np.histogram(M.to_gray_uint8(gen).ravel(), bins=256, range=(0, 255))[0]
    h2 = np.histogram(M.to_gray_uint8(real).ravel(), bins=256, range=(0, 255))[0]
    q = h2 / h2.sum() + 1e-8
    want = entropy(h1 / h1.sum(), qk=q / q.sum())
    assert M.kld_noisy_histogram(gen, real) == pytest.approx(want, rel=1e-9)
    assert M.kld_noisy_histogram(real, real) == pytest.approx(0.0, abs=1e-6)


def test_residual_kld_zero_for_same_and_grows_with_mismatch():
    a = RNG.normal(0, 0.03, 200_000)
    same = M.kld_noise_residual(a, RNG.normal(0, 0.03, 200_000))
    near, far = (
        M.kld_noise_residual(a, RNG.normal(0, 0.035, 200_000)),
        M.kld_noise_residual(a, RNG.normal(0, 0.06, 200_000)),
    )
    assert same < 1e-3 < near < far


def test_correlation_statistic_sees_what_histograms_cannot():
    from scipy.ndimage import gaussian_filter

    white = RNG.normal(0, 1, (256, 256))
    blurred = gaussian_filter(white, 1.0)
    blurred *= white.std() / blurred.std()
    assert abs(M.noise_correlation(white)["rho_h"]) < 0.02
    assert M.noise_correlation(blurred)["rho_v"] > 0.5

    assert M.kld_noise_residual(white / 40, blurred / 40) < 0.01  # same histogram, very different noise


def test_noise_correlation_per_axis_and_lag_known_answers():
    """Noise summed over two neighbours along the rows (w[:, j] + w[:, j+1]): correlation 0.5 with the next pixel
    along the rows, 0 at lag 2 and along the columns; a three-neighbour sum along the columns: 2/3 at lag 1, 1/3 at
    lag 2, 0 along the rows."""
    w = np.random.default_rng(0).normal(size=(400, 401))
    rows = M.noise_correlation(w[:, 1:] + w[:, :-1])
    assert rows["rho_h"] == pytest.approx(0.5, abs=0.02) and abs(rows["rho_h2"]) < 0.02
    assert abs(rows["rho_v"]) < 0.02 and abs(rows["rho_v2"]) < 0.02
    w = np.random.default_rng(1).normal(size=(402, 400))
    cols = M.noise_correlation(w[2:] + w[1:-1] + w[:-2])
    assert cols["rho_v"] == pytest.approx(2 / 3, abs=0.02) and cols["rho_v2"] == pytest.approx(1 / 3, abs=0.02)
    assert abs(cols["rho_h"]) < 0.02 and abs(cols["rho_h2"]) < 0.02
    assert tuple(M.noise_correlation(np.zeros((4, 4)))) == M.STRUCTURE


def test_mean_std():
    assert M.mean_std([1.0, 3.0]) == (2.0, 1.0)
    assert M.format_mean_std([1.0, 3.0], 1) == "2.0 ± 1.0"
    assert np.isnan(M.mean_std([])[0])


def test_frechet_distance_matches_the_closed_form_for_gaussians():
    from raytrain.metrics import frechet_distance

    rng = np.random.default_rng(0)
    a = rng.normal(0.0, 1.0, (20000, 3))
    b = rng.normal(1.0, 2.0, (20000, 3))
    # diagonal Gaussians: |mu_a - mu_b|^2 + sum(s_a + s_b - 2 sqrt(s_a s_b)) = 3 * 1 + 3 * (1 + 4 - 4)
    assert frechet_distance(a, b) == pytest.approx(6.0, rel=0.03)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    few = rng.normal(size=(12, 256))  # rank-deficient covariances still give a finite, symmetric value
    other = few + 0.5
    assert frechet_distance(few, other) == pytest.approx(frechet_distance(other, few), rel=1e-4)
    assert frechet_distance(few, other) == pytest.approx(256 * 0.25, rel=1e-3)  # a pure mean shift
    # the low-rank path (fewer samples than features) equals the matrix square root it replaces
    from scipy import linalg

    x, y = rng.normal(size=(20, 30)), rng.normal(0.3, 1.5, size=(25, 30))
    s_x, s_y = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    d = x.mean(0) - y.mean(0)
    direct = d @ d + np.trace(s_x + s_y) - 2 * np.trace(np.real(linalg.sqrtm(s_x @ s_y)))
    assert frechet_distance(x, y) == pytest.approx(direct, rel=1e-4)
    with pytest.raises(ValueError, match="feature sets"):
        frechet_distance(a, rng.normal(size=(10, 4)))


def test_tiled_restore_equals_the_whole_image_for_a_local_net_and_sees_only_tiles():
    from raytrain.evaluate import tiled

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 5, padding=2), torch.nn.ReLU(), torch.nn.Conv2d(4, 1, 3, padding=1))
    seen = []

    def restore(x):  # receptive radius 3 <= overlap / 2: the stitched result is exact
        seen.append(tuple(x.shape[-2:]))
        return net(x)

    x = torch.rand(1, 1, 150, 97)
    with torch.no_grad():
        whole = net(x)
        out = tiled(restore, tile=64, overlap=8)(x)
    torch.testing.assert_close(out, whole, rtol=0, atol=1e-6)
    assert max(h for h, _ in seen) <= 64 and max(w for _, w in seen) <= 64 and len(seen) == 3 * 2
    seen.clear()
    bad = tiled(restore, tile=64, overlap=0)(x)  # no overlap: the seams differ (the check above can fail)
    assert (bad - whole).abs().max() > 1e-3
    assert tiled(restore, tile=256)(x).shape == x.shape and seen[-1] == (150, 97)  # small enough: one call
    with pytest.raises(ValueError, match="overlap must be even"):
        tiled(restore, tile=64, overlap=7)


def test_psnr_and_ssim_take_the_data_range():
    from raytrain.evaluate import evaluate_pairs

    clean = RNG.uniform(0, 1, (40, 40, 1)).astype(np.float32)
    noisy = (clean + RNG.normal(0, 0.05, clean.shape)).astype(np.float32)
    a = evaluate_pairs(lambda x: x, [(clean, noisy)])[0]
    b = evaluate_pairs(lambda x: x, [(clean * 1000, noisy * 1000)], data_range=1000.0)[0]  # e.g. a HU window
    assert b["psnr_noisy"] == pytest.approx(a["psnr_noisy"], abs=1e-3) and b["ssim"] == pytest.approx(
        a["ssim"], abs=1e-4
    )


def test_akld_is_danets_definition_with_known_answers():
    """AKLD (DANet): KL between zero-mean Gaussians of the local noise variances (7 x 7 Gaussian window, OpenCV's
    sigma 1.4, reflect padding), ratio clamped to [0.1, 10]; checked against DANet's torch code written out here."""
    import torch.nn.functional as F

    from raytrain.metrics import akld, local_variance

    rng = np.random.default_rng(0)
    clean = rng.uniform(0, 1, (20, 24, 3))
    noise = rng.normal(0, 0.05, clean.shape) * np.linspace(0.5, 2, 24)[None, :, None]  # varies across the image
    real = clean + noise
    assert akld(real, real, clean) == 0.0
    # the synthetic noise twice the real one: the variance ratio is 4 everywhere -> 0.5 (log(1/4) + 4 - 1)
    assert akld(real, clean + 2 * noise, clean) == pytest.approx(0.5 * (np.log(0.25) + 3), abs=1e-9)
    assert akld(real, clean + 100 * noise, clean) == pytest.approx(0.5 * (np.log(0.1) + 9), abs=1e-9)  # clamped
    # DANet's estimate_sigma_gauss: cv2.getGaussianKernel(7, -1) (sigma 1.4), F.pad reflect 3, grouped conv
    x = torch.arange(7, dtype=torch.float64) - 3
    g = torch.exp(-0.5 * (x / 1.4) ** 2)
    g = g / g.sum()
    kernel = torch.outer(g, g)[None, None].repeat(3, 1, 1, 1)
    t = torch.from_numpy(noise.transpose(2, 0, 1)[None] ** 2)
    want = F.conv2d(F.pad(t, [3] * 4, mode="reflect"), kernel, groups=3)[0].numpy().transpose(1, 2, 0)
    assert np.allclose(local_variance(noise), want, rtol=1e-10)
