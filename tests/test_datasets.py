"""Paper datasets as distributed (raytrain/data/datasets.py): tiny fixtures in the exact formats, written here."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest

from raytrain.config import load_config
from raytrain.data.collection import load_domains
from raytrain.data.datasets import dataset_kind, load_dataset, read_mat_array
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
    """Streamed (data.stream: true): Ray Data's crop tasks read the SIDD files themselves; validation is read."""
    from raytrain.train.launch import run_training

    sidd_folders(tmp_path / "S", size=48)
    cfg = load_config(None, [f"workdir={tmp_path}", "name=sidd", f"data.source=sidd:{tmp_path / 'S'}", "data.color=rgb",
                             "data.patches.size=16", "data.val_crop=32", "data.val_images=1", "method.width=8",
                             "method.depth=3", "train.steps=4", "train.val_every=4", "train.checkpoint_every=4",
                             "train.batch_size=4", "scaling.num_workers=1", "tracking.enabled=false",
                             "data.stream=true"])  # fmt: skip
    res = run_training(cfg)
    assert res.metrics["step"] == 4 and np.isfinite(res.metrics["val_psnr"])
    assert res.metrics["patches_used_fraction"] == 1.0
    assert 0.0 < res.metrics["data_wait_s"] < res.metrics["step_time_s"]  # a part of each step: the streamed reads
    from raytrain.evaluate import evaluate_pairs

    val = load_domains(cfg).val  # the held-out scene's real SIDD pairs (2) are what validation scored
    assert len(val) == 2
    want = np.mean([r["psnr_noisy"] for r in evaluate_pairs(lambda t: t, val)])
    assert res.metrics["val_psnr_noisy"] == pytest.approx(want, abs=1e-3)


# ------------------------------------------------------------------------------------------------ DND
def write_dnd(root, images: int = 2, crops: int = 3, hw: tuple[int, int] = (40, 50)) -> dict:
    """DND's benchmark layout as its devkit reads it: info.mat (v7.3) whose info.boundingboxes holds one object
    reference per image to a (4, crops) array (MATLAB's (crops, 4), 1-based, inclusive), images_srgb/NNNN.mat with
    InoisySRGB stored with reversed axes. Returns {image: (noisy (H, W, 3), boxes (crops, 4))}."""
    import h5py

    rng = np.random.default_rng(2)
    (root / "images_srgb").mkdir(parents=True)
    made = {}
    with h5py.File(root / "info.mat", "w", userblock_size=512) as f:
        refs = []
        for i in range(1, images + 1):
            boxes = np.array([[1 + k, 2 + k, 10 + 2 * k, 16 + 3 * k] for k in range(crops)], dtype=np.float64)
            refs.append(f.create_dataset(f"#refs#/b{i}", data=boxes.T).ref)
            noisy = rng.random((*hw, 3)).astype(np.float32)
            write_v73(root / "images_srgb" / f"{i:04d}.mat", "InoisySRGB", noisy)
            made[i] = (noisy, boxes.astype(int))
        f.create_group("info").create_dataset("boundingboxes", data=np.array(refs, dtype=h5py.ref_dtype)[None])
    return made


def test_dnd_crops_are_cut_by_the_devkits_boxes(tmp_path):
    from raytrain.data.datasets import dnd_crops

    made = write_dnd(tmp_path / "DND")
    got = list(dnd_crops(tmp_path / "DND"))
    assert [i for i, _ in got] == [1, 2] and all(len(c) == 3 for _, c in got)
    noisy, boxes = made[2]
    r0, c0, r1, c1 = boxes[1]  # [2, 3, 12, 19]: rows 2..12, cols 3..19 (1-based, inclusive)
    np.testing.assert_array_equal(got[1][1][1], noisy[r0 - 1 : r1, c0 - 1 : c1])
    assert got[1][1][1].shape == (11, 17, 3)


def test_dnd_submission_bundles_every_crop_as_the_devkit_does(tmp_path):
    import scipy.io

    from raytrain.submission import dnd_submission

    made = write_dnd(tmp_path / "DND")
    n = dnd_submission(lambda t: 1 - t, tmp_path / "DND", tmp_path / "sub", progress=False)
    assert n == 2 and sorted(p.name for p in (tmp_path / "sub" / "bundled").iterdir()) == ["0001.mat", "0002.mat"]
    m = scipy.io.loadmat(tmp_path / "sub" / "bundled" / "0002.mat")
    assert m["Idenoised"].shape == (1, 3) and not m["israw"].item() and m["eval_version"].item() == "1.0"
    noisy, boxes = made[2]
    r0, c0, r1, c1 = boxes[2]
    np.testing.assert_allclose(m["Idenoised"][0, 2], 1 - noisy[r0 - 1 : r1, c0 - 1 : c1], atol=1e-6)
    with pytest.raises(DataError, match="exists and is not empty"):
        dnd_submission(lambda t: t, tmp_path / "DND", tmp_path / "sub", progress=False)


def test_a_partial_dnd_folder_is_one_line_and_leaves_no_submission(tmp_path):
    from raytrain.data.datasets import dnd_crops
    from raytrain.submission import dnd_submission

    with pytest.raises(DataError, match=r"info.mat: not found"):
        list(dnd_crops(tmp_path))
    write_dnd(tmp_path / "DND")
    (tmp_path / "DND" / "images_srgb" / "0002.mat").unlink()
    with pytest.raises(DataError, match=r"images_srgb/0002.mat: file not found"):
        dnd_submission(lambda t: t, tmp_path / "DND", tmp_path / "sub", progress=False)
    assert not (tmp_path / "sub").exists() and not list(tmp_path.glob(".sub*"))  # nothing half-written
    write_v73(tmp_path / "DND" / "images_srgb" / "0002.mat", "other", np.zeros((4, 4, 3), np.float32))
    with pytest.raises(DataError, match=r"0002.mat: no variable 'InoisySRGB'"):
        list(dnd_crops(tmp_path / "DND"))


def test_raytrain_dnd_refuses_a_gray_model_and_writes_an_rgb_models_submission(tmp_path, capsys):
    import torch

    from raytrain.cli import main
    from raytrain.methods import build_method
    from raytrain.train.checkpoint import export_inference

    write_dnd(tmp_path / "DND", images=1)
    for color in ("gray", "rgb"):
        cfg = load_config(None, [f"data.color={color}", "method.width=8", "method.depth=3"])
        export_inference(tmp_path / f"{color}.pt", build_method(cfg, torch.device("cpu")), cfg.model_dump_json())
    assert main(["dnd", str(tmp_path / "gray.pt"), str(tmp_path / "DND"), "--out", str(tmp_path / "g")]) == 1
    assert "a gray model (data.color); DND's crops are RGB" in capsys.readouterr().err
    assert main(["dnd", str(tmp_path / "rgb.pt"), str(tmp_path / "DND"), "--out", str(tmp_path / "s")]) == 0
    assert (tmp_path / "s" / "bundled" / "0001.mat").is_file()


# ------------------------------------------------------------------------------------------------ LDCT
def write_ct(path, hu: np.ndarray, instance: int, rescale: bool = True) -> None:
    """One CT slice as a scanner writes it: unsigned stored values, HU = value * slope + intercept."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality, ds.InstanceNumber = (
        CTImageStorage,
        meta.MediaStorageSOPInstanceUID,
        "CT",
        instance,
    )
    slope, intercept = 0.5, -1024.0
    raw = np.round((hu - intercept) / slope).astype(np.uint16)
    ds.Rows, ds.Columns = raw.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    if rescale:
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ds.PixelData = raw.tobytes()
    ds.save_as(path, enforce_file_format=True)


def write_ldct(root, patients=("L067", "L096"), slices: int = 3, fmt: str = "dicom") -> dict:
    """The Mayo layout: PATIENT/full_1mm and PATIENT/quarter_1mm; file names in an order unlike the slice order
    (DICOM pairs by InstanceNumber). Returns {(patient, slice): (full HU, quarter HU)}."""
    rng = np.random.default_rng(3)
    made = {}
    for p in patients:
        for k in range(slices):
            full = rng.uniform(-300, 400, (24, 20)).round()
            quarter = full + rng.normal(0, 30, full.shape).round()
            made[(p, k)] = (full, quarter)
            for dose, hu in (("full_1mm", full), ("quarter_1mm", quarter)):
                (root / p / dose).mkdir(parents=True, exist_ok=True)
                stem = f"{p}_{dose}_{(slices - k) * 7:03d}"  # names sort in reverse slice order
                if fmt == "dicom":
                    write_ct(root / p / dose / f"{stem}.IMA", hu, instance=k + 1)
                else:
                    iio.imwrite(root / p / dose / f"{k:03d}.png", (hu + 1024).astype(np.uint16))
    return made


@pytest.mark.parametrize("fmt", ["dicom", "png16"])
def test_ldct_slices_pair_by_patient_and_slice_in_the_hu_window(tmp_path, fmt):
    made = write_ldct(tmp_path / "LDCT", fmt=fmt)
    pairs, groups = load_dataset(f"ldct:{tmp_path / 'LDCT'}", "gray", hu_window=(-160.0, 240.0))
    assert len(pairs) == 6 and groups == ["L067"] * 3 + ["L096"] * 3
    full, quarter = made[("L096", 1)]
    clean, noisy = pairs[4]
    assert clean.name == "L096_0001"
    want = lambda hu: np.clip((hu - -160.0) / 400.0, 0, 1).astype(np.float32)[..., None]  # noqa: E731
    np.testing.assert_allclose(clean.pixels, want(full), atol=1e-6)
    np.testing.assert_allclose(noisy.pixels, want(quarter), atol=1e-6)
    assert clean.pixels.min() == 0.0 and clean.pixels.max() == 1.0  # the window clips (-300..400 HU drawn)


def test_ldct_bad_slices_are_one_line_naming_the_file(tmp_path):
    write_ldct(tmp_path / "A", patients=("L067",))
    bad = sorted((tmp_path / "A" / "L067" / "quarter_1mm").iterdir())[0]
    write_ct(bad, np.zeros((24, 20)), instance=3, rescale=False)
    with pytest.raises(DataError, match=rf"{bad.name}: no RescaleSlope or RescaleIntercept tag"):
        load_dataset(f"ldct:{tmp_path / 'A'}", "gray")
    bad.write_bytes(b"garbage")
    with pytest.raises(DataError, match=rf"{bad.name}: not a readable DICOM slice"):
        load_dataset(f"ldct:{tmp_path / 'A'}", "gray")
    bad.unlink()
    with pytest.raises(DataError, match=r"quarter_1mm: 2 slices, its full-dose folder full_1mm has 3"):
        load_dataset(f"ldct:{tmp_path / 'A'}", "gray")
    write_ldct(tmp_path / "B", patients=("L067",), fmt="png16")
    iio.imwrite(tmp_path / "B" / "L067" / "full_1mm" / "000.png", np.zeros((24, 20), np.uint8))
    with pytest.raises(DataError, match=r"000.png: a uint8 image of shape \(24, 20\); CT slices must be 16-bit"):
        load_dataset(f"ldct:{tmp_path / 'B'}", "gray")
    with pytest.raises(ConfigError, match=r"hu_window: low 100 must be below high 100"):
        load_config(None, ["data.hu_window=[100,100]"])


def write_png(path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, arr)


def sr_image(rng, h: int, w: int) -> np.ndarray:
    return rng.integers(0, 256, (h, w), dtype=np.uint8)


def test_sr_pairs_read_hr_lr_folders_and_realsr_side_by_side_files(tmp_path):
    """Both SR layouts: HR/ and LR/ folders (DRealSR: train_HR / train_LR, _x1 / _x4 names) and RealSR V3's files
    side by side (NAME_HR beside NAME_LR2 / NAME_LR4: only this scale's LR pairs); each pair is (HR, LR), the LR
    image HR's size / scale, its group the folder without its HR/LR part."""
    from raytrain.data.datasets import sr_pairs

    rng = np.random.default_rng(0)
    want = {}
    for i in range(2):
        hr, lr = sr_image(rng, 32, 24), sr_image(rng, 8, 6)
        write_png(tmp_path / "dreal" / "x4" / "train_HR" / f"img{i}_x1.png", hr)
        write_png(tmp_path / "dreal" / "x4" / "train_LR" / f"img{i}_x4.png", lr)
        want[f"x4/img{i}"] = (hr, lr)
    pairs, groups = sr_pairs(tmp_path / "dreal", 4, "gray")
    assert [h.name for h, _ in pairs] == sorted(want) and groups == ["x4", "x4"]
    for h, lo in pairs:
        assert np.array_equal((h.pixels[..., 0] * 255).round(), want[h.name][0])
        assert np.array_equal((lo.pixels[..., 0] * 255).round(), want[h.name][1])
    for cam in ("Canon", "Nikon"):
        write_png(tmp_path / "realsr" / cam / "Train" / "4" / f"{cam}_001_HR.png", sr_image(rng, 16, 16))
        write_png(tmp_path / "realsr" / cam / "Train" / "4" / f"{cam}_001_LR4.png", sr_image(rng, 4, 4))
        write_png(tmp_path / "realsr" / cam / "Train" / "4" / f"{cam}_001_LR2.png", sr_image(rng, 8, 8))
    pairs, groups = sr_pairs(tmp_path / "realsr", 4, "gray")
    assert groups == ["Canon/Train/4", "Nikon/Train/4"] and [lo.pixels.shape for _, lo in pairs] == [(4, 4, 1)] * 2
    assert [h.pixels.shape for h, _ in pairs] == [(16, 16, 1)] * 2


def test_bad_sr_sets_are_one_line_naming_the_file(tmp_path):
    from raytrain.data.datasets import sr_pairs

    rng = np.random.default_rng(1)
    with pytest.raises(DataError, match="SR dataset path not found"):
        sr_pairs(tmp_path / "nope", 4, "gray")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no SR images"):
        sr_pairs(tmp_path / "empty", 4, "gray")
    write_png(tmp_path / "a" / "HR" / "p.png", sr_image(rng, 16, 16))
    write_png(tmp_path / "a" / "LR" / "p.png", sr_image(rng, 8, 8))
    with pytest.raises(DataError, match=r"LR[/\\]p.png: the HR image is 2x its LR image, data.scale is 4"):
        sr_pairs(tmp_path / "a", 4, "gray")
    write_png(tmp_path / "a" / "LR" / "p.png", sr_image(rng, 4, 5))
    with pytest.raises(DataError, match=r"p.png: LR 4x5 x 4 is not its HR image's 16x16"):
        sr_pairs(tmp_path / "a", 4, "gray")
    write_png(tmp_path / "a" / "LR" / "p.png", sr_image(rng, 4, 4))
    write_png(tmp_path / "a" / "HR" / "q.png", sr_image(rng, 16, 16))
    with pytest.raises(DataError, match=r"HR[/\\]q\.png: no matching LR image \(x4\) for this HR one"):
        sr_pairs(tmp_path / "a", 4, "gray")
