"""Paper datasets as distributed (raytrain/data/datasets.py): tiny fixtures in the exact formats, written here."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest

from raytrain.config import load_config
from raytrain.data.datasets import dataset_kind, load_dataset, read_mat_array
from raytrain.data.pipeline import load_domains
from raytrain.errors import ConfigError, DataError

SCENES = ["0001_001_S6_00100_00060_3200_L", "0002_001_S6_00100_00060_3200_N", "0003_002_GP_00100_00100_5500_L",
          "0004_003_IP_00400_00400_3200_L"]  # fmt: skip


def sidd_folders(root, medium: bool = False, size: int = 40):
    """SIDD Small (GT_SRGB_010.PNG) or Medium (0001_GT_SRGB_010.PNG) layout: 4 scenes x 2 pairs, RGB uint8; returns
    {(scene, id): (gt, noisy)} as written."""
    rng = np.random.default_rng(0)
    written = {}
    for s in SCENES:
        (root / "Data" / s).mkdir(parents=True)
        for ident in ("010", "011"):
            gt = rng.integers(0, 256, (size, size + 8, 3), dtype=np.uint8)
            noisy = np.clip(gt.astype(int) + rng.integers(-20, 21, gt.shape), 0, 255).astype(np.uint8)
            pre = s[:4] + "_" if medium else ""
            iio.imwrite(root / "Data" / s / f"{pre}GT_SRGB_{ident}.PNG", gt)
            iio.imwrite(root / "Data" / s / f"{pre}NOISY_SRGB_{ident}.PNG", noisy)
            written[(s, ident)] = (gt, noisy)
    return written


def blocks(images: int = 3, per: int = 2, size: int = 16) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    gt = rng.integers(0, 256, (images, per, size, size, 3), dtype=np.uint8)
    return {"ValidationGtBlocksSrgb": gt, "ValidationNoisyBlocksSrgb": (255 - gt).astype(np.uint8)}


def write_v73(path, name: str, arr: np.ndarray) -> None:
    """A MATLAB v7.3 file as MATLAB writes it: HDF5 with a 512-byte user block holding the MAT header, the array's
    axes reversed (column-major)."""
    import h5py

    with h5py.File(path, "w", userblock_size=512) as f:
        f.create_dataset(name, data=arr.transpose(tuple(range(arr.ndim - 1, -1, -1))))
    with open(path, "r+b") as fh:
        fh.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, HDF5 schema 1.00 .".ljust(116) + bytes(8) + b"\x00\x02IM")


@pytest.mark.parametrize("medium", [False, True])
def test_sidd_folders_read_every_pair_with_its_scene(tmp_path, medium):
    written = sidd_folders(tmp_path / "SIDD", medium)
    pairs, groups = load_dataset(f"sidd:{tmp_path / 'SIDD'}", "rgb")
    assert len(pairs) == 8 and groups == [s for s in SCENES for _ in range(2)]
    clean, noisy = pairs[3]  # scene 2, id 011
    assert clean.name == noisy.name == f"{SCENES[1]}_011"
    gt, ny = written[(SCENES[1], "011")]
    np.testing.assert_array_equal(clean.pixels, gt / np.float32(255))
    np.testing.assert_array_equal(noisy.pixels, ny / np.float32(255))
    assert clean.pixels.dtype == np.float32 and clean.pixels.shape == (40, 48, 3)
    gray, _ = load_dataset(f"sidd:{tmp_path / 'SIDD' / 'Data'}", "gray")  # the Data folder itself, and gray
    assert gray[0][0].pixels.shape == (40, 48, 1)


def test_sidd_partial_folders_are_one_line_naming_the_file(tmp_path):
    sidd_folders(tmp_path / "S")
    (tmp_path / "S" / "Data" / SCENES[2] / "GT_SRGB_011.PNG").unlink()
    with pytest.raises(DataError, match=rf"NOISY_SRGB_011.PNG: no matching GT_SRGB_011 file in {SCENES[2]}"):
        load_dataset(f"sidd:{tmp_path / 'S'}", "rgb")
    with pytest.raises(DataError, match="SIDD path not found"):
        load_dataset(f"sidd:{tmp_path / 'nowhere'}", "rgb")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no SIDD scene folders"):
        load_dataset(f"sidd:{tmp_path / 'empty'}", "rgb")


@pytest.mark.parametrize("version", ["v5", "v7.3"])
def test_sidd_validation_blocks_read_in_matlab_order(tmp_path, version):
    import scipy.io

    arrays = blocks()
    for name, arr in arrays.items():
        if version == "v5":
            scipy.io.savemat(tmp_path / f"{name}.mat", {name: arr})
        else:
            write_v73(tmp_path / f"{name}.mat", name, arr)
    np.testing.assert_array_equal(read_mat_array(tmp_path / "ValidationGtBlocksSrgb.mat", "ValidationGtBlocksSrgb"),
                                  arrays["ValidationGtBlocksSrgb"])  # fmt: skip
    pairs, groups = load_dataset(f"sidd:{tmp_path}", "rgb")
    assert len(pairs) == 6 and groups == ["val_01", "val_01", "val_02", "val_02", "val_03", "val_03"]
    clean, noisy = pairs[3]  # image 2, block 2
    assert clean.name == "val_02_02"
    np.testing.assert_array_equal(clean.pixels, arrays["ValidationGtBlocksSrgb"][1, 1] / np.float32(255))
    np.testing.assert_array_equal(noisy.pixels, arrays["ValidationNoisyBlocksSrgb"][1, 1] / np.float32(255))


def test_sidd_blocks_without_their_variable_or_of_two_shapes_are_one_line(tmp_path):
    import scipy.io

    arrays = blocks()
    scipy.io.savemat(tmp_path / "ValidationGtBlocksSrgb.mat", {"other": arrays["ValidationGtBlocksSrgb"]})
    scipy.io.savemat(
        tmp_path / "ValidationNoisyBlocksSrgb.mat", {"ValidationNoisyBlocksSrgb": arrays["ValidationNoisyBlocksSrgb"]}
    )
    with pytest.raises(DataError, match=r"ValidationGtBlocksSrgb.mat: no variable 'ValidationGtBlocksSrgb'"):
        load_dataset(f"sidd:{tmp_path}", "rgb")
    scipy.io.savemat(
        tmp_path / "ValidationGtBlocksSrgb.mat", {"ValidationGtBlocksSrgb": blocks(size=8)["ValidationGtBlocksSrgb"]}
    )
    with pytest.raises(DataError, match=r"ValidationNoisyBlocksSrgb.mat: blocks of shape \(3, 2, 16, 16, 3\), the GT"):
        load_dataset(f"sidd:{tmp_path}", "rgb")
    (tmp_path / "ValidationGtBlocksSrgb.mat").write_bytes(b"not a mat file at all")
    with pytest.raises(DataError, match="ValidationGtBlocksSrgb.mat: not a readable MATLAB"):
        load_dataset(f"sidd:{tmp_path}", "rgb")


def test_a_dataset_source_splits_by_scene_and_brings_its_own_noise(tmp_path):
    sidd_folders(tmp_path / "S")
    base = [f"data.source=sidd:{tmp_path / 'S'}", "data.color=rgb", "data.patches.size=16", "data.val_crop=32",
            "data.paired.count=2", "data.val_images=1", "method.name=senm"]  # fmt: skip
    for seed in range(4):
        col = load_domains(load_config(None, [*base, f"seed={seed}"]))
        assert col.split.sizes() == {"val": 2, "paired": 2, "source": 2, "target": 2}  # val: one whole scene (2 pairs)
        scene = lambda i: SCENES[i // 2]  # noqa: E731 - pairs are in scene order, 2 per scene
        assert len({scene(i) for i in col.split.val}) == 1
        assert not {scene(i) for i in col.split.val} & {scene(i) for i in col.split.train}
        assert len({scene(i) for i in col.split.paired}) == 1  # the paired set is a whole scene too
    assert dataset_kind("sidd:/x") == ("sidd", "/x") and dataset_kind("s3://bucket/x") is None
    assert dataset_kind("samples") is None and dataset_kind("/data/sidd") is None
    with pytest.raises(ConfigError, match="noisy_source: data.source 'sidd:/x' is a dataset with its own noisy images"):
        load_config(None, ["data.source=sidd:/x", "data.noisy_source=/y"])


@pytest.mark.slow
def test_a_training_run_starts_from_a_sidd_folder(ray_local, tmp_path):
    from raytrain.train.launch import run_training

    sidd_folders(tmp_path / "S", size=48)
    cfg = load_config(None, [f"workdir={tmp_path}", "name=sidd", f"data.source=sidd:{tmp_path / 'S'}", "data.color=rgb",
                             "data.patches.size=16", "data.val_crop=32", "data.val_images=1", "method.width=8",
                             "method.depth=3", "train.steps=4", "train.val_every=4", "train.checkpoint_every=4",
                             "train.batch_size=4", "scaling.num_workers=1", "tracking.enabled=false"])  # fmt: skip
    res = run_training(cfg)
    assert res.metrics["step"] == 4 and np.isfinite(res.metrics["val_psnr"])
    import torch

    from raytrain.metrics import psnr

    noisy, clean = load_domains(cfg).val[0]  # the held-out real SIDD pair is what validation scored
    want = float(psnr(torch.tensor(noisy), torch.tensor(clean)))
    assert res.metrics["val_psnr_noisy"] == pytest.approx(want, abs=1e-3)
