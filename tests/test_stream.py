"""data.stream: large sets stay in their files and Ray Data's crop tasks read the images they cut patches from
(raytrain/data/stored.py, raytrain/data/collection.py, raytrain/data/pipeline.py)."""

from __future__ import annotations

import os
import pickle

import imageio.v3 as iio
import numpy as np
import pytest
from test_datasets import sidd_folders

from raytrain.config import load_config
from raytrain.data import collection
from raytrain.data.collection import DomainImages, load_domains
from raytrain.data.pipeline import DOMAIN_CODES, cut_patches, image_visit
from raytrain.data.stored import StoredImage, clear_cache, is_stored, open_image, pixels
from raytrain.errors import DataError

TINY_RRDB = ["method.name=rrdb", "method.width=8", "method.blocks=1", "method.growth=4"]


def photos(folder, n: int = 6, shape=(40, 52, 3), seed: int = 0) -> list[np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        img = rng.integers(0, 256, shape, dtype=np.uint8)
        iio.imwrite(folder / f"im{i}.png", img)
        out.append(img)
    return out


def sr_set(root, n: int = 6) -> None:
    rng = np.random.default_rng(3)
    for i in range(n):
        (root / "HR").mkdir(parents=True, exist_ok=True)
        (root / "LR").mkdir(parents=True, exist_ok=True)
        iio.imwrite(root / "HR" / f"p{i}.png", rng.integers(0, 256, (48, 40, 3), dtype=np.uint8))
        iio.imwrite(root / "LR" / f"p{i}.png", rng.integers(0, 256, (24, 20, 3), dtype=np.uint8))


SETUPS = {
    "folder + noise model, max_size": ["data.max_size=32", "data.noise.sigma=25"],
    "folder, SR x2 (noise on B(HR))": [*TINY_RRDB, "data.scale=2", "data.max_size=null"],
    "folder, SR x2, downscale_clean + tiles": [
        "data.scale=2",
        "data.downscale_clean=true",
        "data.tiles=8",
        "data.max_size=null",
        "data.patches.size=8",
    ],  # fmt: skip
    "folder + tiles": ["data.tiles=16", "data.patches.size=16"],
    "sidd: folders": ["SIDD"],
    "sr: HR / LR folders": [*TINY_RRDB, "SR", "data.scale=2"],
}


@pytest.mark.parametrize("setup", list(SETUPS))
def test_streamed_domains_hold_the_same_pixels_as_read_ones_and_pickle_without_them(tmp_path, setup):
    """Every domain image of a streamed run is a StoredImage whose pixels equal the in-memory run's (every step:
    colour, max_size, the crop to the scale, B(x), the noise realisation, tiles); validation is the same; the
    domains Ray's object store would carry hold paths, not pixels."""
    photos(tmp_path / "imgs")
    sets = SETUPS[setup]
    if "SIDD" in sets:
        sidd_folders(tmp_path / "S", size=40)
        sets = [s for s in sets if s != "SIDD"] + [f"data.source=sidd:{tmp_path / 'S'}"]
    elif "SR" in sets:
        sr_set(tmp_path / "sr")
        sets = [s for s in sets if s != "SR"] + [f"data.source=sr:{tmp_path / 'sr'}"]
    else:
        sets = [*sets, f"data.source={tmp_path / 'imgs'}"]
    base = ["data.color=rgb", "data.val_images=1", "data.paired.count=2", "data.patches.size=8", *sets]
    read, streamed = (load_domains(load_config(None, [*base, f"data.stream={s}"])) for s in ("false", "true"))
    assert [v.clean.tobytes() + v.noisy.tobytes() for v in read.val] == [
        v.clean.tobytes() + v.noisy.tobytes() for v in streamed.val
    ]
    for name in ("paired", "source", "target"):
        a, b = read.domains[name], streamed.domains[name]
        assert a.patches_per_image == 1 and b.patches_per_image == 64
        for key in ("clean", "noisy"):
            got, want = getattr(b, key), getattr(a, key)
            assert (got is None) == (want is None)
            if want is None:
                continue
            assert len(got) == len(want) > 0 and all(is_stored(x) for x in got) and not any(map(is_stored, want))
            for w, g in zip(want, got, strict=True):
                assert g.shape == w.shape and np.array_equal(pixels(g), w), (name, key)
        assert b"numpy" in pickle.dumps(a) and b"numpy" not in pickle.dumps(b)  # no array travels


def test_auto_streams_only_sets_above_the_threshold(tmp_path, monkeypatch, capsys):
    import raytrain.data.stored as stored

    photos(tmp_path / "imgs")
    reads = []
    real = stored.read_image
    monkeypatch.setattr(stored, "read_image", lambda p, c="gray": reads.append(str(p)) or real(p, c))
    base = [f"data.source={tmp_path / 'imgs'}", "data.color=rgb", "data.val_images=1", "data.patches.size=8"]
    small = load_domains(load_config(None, base))  # stream: auto, a few KB of images
    assert not any(is_stored(x) for x in small.domains["source"].clean)
    assert len(reads) == 6  # each file once: a clean image and its noise realisation share the read
    assert all(x.flags.writeable for x in small.domains["source"].clean)
    assert small.domains["source"].patches_per_image == 1
    monkeypatch.setattr(collection, "STREAM_ABOVE", 10_000)  # 6 images of 40 x 52 x 3 float32: 50 KB each
    big = load_domains(load_config(None, [*base, "data.stream_patches=4"]))
    assert all(is_stored(x) for x in big.domains["source"].clean)
    assert big.domains["source"].patches_per_image == 4
    assert "data.stream: 6 images (0.0 GB as float32) are read from their files" in capsys.readouterr().out
    samples = load_domains(load_config(None, ["data.stream=true", "data.val_images=1"]))  # bundled: always read
    assert not any(is_stored(x) for x in samples.domains["target"].noisy)


def constant_domain(folder, values, m: int) -> DomainImages:
    folder.mkdir(parents=True, exist_ok=True)
    for k, v in enumerate(values):
        iio.imwrite(folder / f"c{k}.png", np.full((24, 30), v, np.uint8))
    imgs = [open_image(folder / f"c{k}.png", "gray", lazy=True) for k in range(len(values))]
    return DomainImages(clean=imgs, patches_per_image=m)


def test_a_visit_cuts_its_patches_from_one_image_read_once_and_a_batch_mixes_images(tmp_path, monkeypatch):
    """m patches per read: every patch of a visit comes from the visit's image; consecutive patch ids go round the
    visits of their group, so 16 rows in a row come from 16 visits; cutting a block reads each of its images once;
    the patches of ids do not depend on how the ids are split into tasks."""
    values = [10 * (k + 1) for k in range(12)]
    dom = constant_domain(tmp_path / "c", values, m=8)
    reads = []
    import raytrain.data.stored as stored

    real = stored.read_image
    monkeypatch.setattr(stored, "read_image", lambda p, c="gray": reads.append(str(p)) or real(p, c))
    monkeypatch.setattr(stored, "CACHE_BYTES", 1)
    monkeypatch.setattr(stored, "CACHE_KEEP", 1)  # the cache keeps one image: the block is cut image by image
    clear_cache()
    ids = np.arange(1024)
    got = cut_patches(ids, dom, 8, "dihedral", 5, DOMAIN_CODES["source"])["clean"]
    assert got.shape == (1024, 1, 8, 8)
    level = np.round(got[:, 0, 0, 0] * 255).astype(int)
    assert np.all(got == got[:, :, :1, :1])  # a constant image's patch is constant
    visits = np.array([image_visit(int(i), 8) for i in ids])
    assert len(set(visits)) == 128 and len(set(visits[:16])) == 16 and image_visit(1024, 8) == 128
    for v in set(visits):
        assert len(set(level[visits == v])) == 1  # one image per visit
    assert len(set(level[:16])) > 4  # 16 consecutive rows: 16 visits' images, not one
    assert sorted(set(level)) == values and len(reads) == len(values)  # each image read once for the block
    halves = [cut_patches(part, dom, 8, "dihedral", 5, DOMAIN_CODES["source"])["clean"]
              for part in (ids[:300], ids[300:])]  # fmt: skip
    assert np.array_equal(np.concatenate(halves), got)


def test_the_cache_is_bounded_and_a_rewritten_file_is_read_again(tmp_path, monkeypatch):
    import raytrain.data.stored as stored

    dom = constant_domain(tmp_path / "c", [1, 2, 3, 4], m=4)
    clear_cache()
    monkeypatch.setattr(stored, "CACHE_BYTES", 2 * 24 * 30 * 4)  # two images
    monkeypatch.setattr(stored, "CACHE_KEEP", 1)
    for img in dom.clean:
        pixels(img)
    assert len(stored._cache) == 2 and sum(a.nbytes for a in stored._cache.values()) <= stored.CACHE_BYTES
    assert not pixels(dom.clean[3]).flags.writeable  # shared by every caller of the cache
    path = tmp_path / "c" / "c0.png"
    before = pixels(open_image(path, "gray", lazy=True))
    iio.imwrite(path, np.full((24, 30), 200, np.uint8))
    os.utime(path, ns=(1, 1))  # a new mtime whatever the clock's resolution
    after = pixels(open_image(path, "gray", lazy=True))
    assert before[0, 0, 0] == pytest.approx(1 / 255) and after[0, 0, 0] == pytest.approx(200 / 255)


def test_a_corrupt_streamed_file_is_one_line_naming_it_where_it_is_read(tmp_path):
    """The header is fine, the body truncated: opening passes (nothing is decoded), the read names the file; the
    same error from a Ray Data task reaches the driver as text inside Ray's errors and is rebuilt from it."""
    from raytrain.train.launch import root_cause

    path = tmp_path / "t.png"
    iio.imwrite(path, np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:300])
    img = open_image(path, "gray", lazy=True)
    assert isinstance(img, StoredImage) and img.shape == (64, 64, 1)
    with pytest.raises(DataError, match=r"t\.png: cannot decode image"):
        pixels(img)
    empty = tmp_path / "e.png"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match=r"e\.png: empty file"):  # no header: read (and refused) at once
        open_image(empty, "gray", lazy=True)

    class UserCodeException(Exception):
        pass

    inner = UserCodeException(f"Traceback ...\nraytrain.errors.DataError: {path}: cannot decode image (truncated)\n")
    outer = RuntimeError("Training failed due to worker errors")
    outer.__cause__ = inner
    got = root_cause(outer)
    assert isinstance(got, DataError) and str(got) == f"{path}: cannot decode image (truncated)"
    plain = RuntimeError("outer")
    plain.__cause__ = ValueError("inner")
    assert isinstance(root_cause(plain), ValueError)  # no raytrain error anywhere: the innermost one


def test_a_raytrain_error_raised_in_a_trial_reaches_the_driver_as_its_own_line():
    """A Tune trial's (or any task's) RaytrainError comes back as Ray's RayTaskError made a subclass of it, whose text
    is the remote traceback: the line the trial raised is rebuilt from it, not the traceback's first line."""
    from ray.exceptions import RayTaskError

    from raytrain.train.launch import root_cause

    try:
        raise DataError("pipe-noise: /data: no images in this folder")
    except DataError as exc:
        remote = RayTaskError("group_trial", __import__("traceback").format_exc(), exc).as_instanceof_cause()
    assert isinstance(remote, DataError) and str(remote).count("\n") > 1  # the dual class: a traceback as its text
    got = root_cause(remote)
    assert type(got) is DataError and str(got) == "pipe-noise: /data: no images in this folder"
