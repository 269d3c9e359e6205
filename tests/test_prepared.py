"""Decode once (data/prepared.py, ``raytrain data prepare``): the store holds the decoder's pixels byte for byte; a run
reading it gets the same validation pairs and the same patches as from the files (8-bit ones as uint8, memory-mapped);
a changed, new or missing source file, a truncated array and a broken manifest are one line naming the file."""

from __future__ import annotations

import json
import os

import imageio.v3 as iio
import numpy as np
import pytest

from raytrain.cli import main
from raytrain.config import load_config
from raytrain.data.prepared import MANIFEST, Store, prepare, using
from raytrain.errors import DataError


@pytest.fixture
def pairs(tmp_path):
    """A folder of 3 RGB pairs (clean/, noisy/) of 8-bit PNGs, a 16-bit gray PNG and an RGBA PNG (in extra/)."""
    rng = np.random.default_rng(0)
    src = tmp_path / "src"
    for sub in ("clean", "noisy", "extra"):
        (src / sub).mkdir(parents=True)
    for i, (h, w) in enumerate([(70, 90), (64, 64), (81, 77)]):
        clean = (rng.random((h, w, 3)) * 255).astype(np.uint8)
        noisy = np.clip(clean + rng.normal(0, 12, clean.shape), 0, 255).astype(np.uint8)
        iio.imwrite(src / "clean" / f"p{i}.png", clean)
        iio.imwrite(src / "noisy" / f"p{i}.png", noisy)
    iio.imwrite(src / "extra" / "deep.png", (rng.random((40, 50)) * 65535).astype(np.uint16))
    iio.imwrite(src / "extra" / "alpha.png", (rng.random((30, 20, 4)) * 255).astype(np.uint8))
    (src / "extra" / "notes.txt").write_text("not an image")
    return src


def run_cfg(src, *extra):
    return load_config(None, [f"data.source={src}/clean", f"data.noisy_source={src}/noisy", "data.color=rgb",
                              "data.stream=true", "data.val_images=1", "data.patches.size=16", "data.val_crop=32",
                              "data.max_size=null", "data.stream_patches=4", *extra])  # fmt: skip


def test_the_store_holds_the_decoders_pixels_and_a_rerun_decodes_only_what_changed(pairs, tmp_path):
    dst = tmp_path / "store"
    got = prepare(str(pairs), str(dst), workers=2, progress=False)
    assert (got["files"], got["decoded"], got["kept"]) == (8, 8, 0)
    store = Store(str(dst))
    assert store.source == str(pairs.resolve()) and len(store.files) == 8  # notes.txt is no image
    for rel, e in store.files.items():
        native = iio.imread(pairs / rel)
        arr = np.load(e.array)
        assert arr.dtype == native.dtype and np.array_equal(arr, native), rel  # byte-equal: uint8, uint16, RGBA
        assert e.sha256 and e.array_bytes == os.path.getsize(e.array) and e.size == os.path.getsize(pairs / rel)
    assert store.files["extra/deep.png"].dtype == "uint16" and store.files["extra/alpha.png"].shape == (30, 20, 4)
    assert json.loads((dst / MANIFEST).read_text())["files"]["clean/p0.png"]["array"] == "clean/p0.png.npy"
    # opened under the store: an 8-bit image's raw levels are its pixels (alpha dropped), a 16-bit one has none
    from raytrain.data.stored import open_image

    with using(str(dst)):
        rgba, deep = (
            open_image(pairs / "extra" / "alpha.png", "rgb", True),
            open_image(pairs / "extra" / "deep.png", "gray", True),
        )
    assert rgba.raw_dtype() == np.uint8 and rgba.raw().shape == (30, 20, 3) and deep.raw_dtype() is None
    assert np.array_equal(rgba.raw().astype(np.float32) / np.float32(255), np.asarray(rgba))
    assert np.asarray(deep).dtype == np.float32 and np.asarray(deep).max() <= 1.0
    # again: nothing changed, nothing decoded; a rewritten file is decoded again; a removed one leaves the store
    assert prepare(str(pairs), str(dst), progress=False)["decoded"] == 0
    iio.imwrite(pairs / "clean" / "p1.png", np.zeros((64, 64, 3), np.uint8))
    (pairs / "extra" / "alpha.png").unlink()
    got = prepare(str(pairs), str(dst), progress=False)
    assert (got["files"], got["decoded"], got["removed"]) == (7, 1, 1)
    assert not (dst / "extra" / "alpha.png.npy").exists()
    assert not np.load(dst / "clean" / "p1.png.npy").any()


def test_a_run_from_the_store_has_the_same_pairs_and_patches_as_from_the_files(pairs, tmp_path):
    from raytrain.data.collection import load_domains
    from raytrain.data.pipeline import cut_patches, stream_dtype
    from raytrain.data.stored import is_stored

    prepare(str(pairs), str(tmp_path / "store"), progress=False)
    files = load_domains(run_cfg(pairs))
    store = load_domains(run_cfg(pairs, f"data.prepared={tmp_path / 'store'}"))
    for (c1, n1), (c2, n2) in zip(files.val, store.val, strict=True):
        assert np.array_equal(c1, c2) and np.array_equal(n1, n2)
    a, b = files.domains["paired"], store.domains["paired"]
    assert all(is_stored(im) and im.prepared is not None for im in b.clean + b.noisy)
    assert all(im.prepared is None for im in a.clean)
    assert stream_dtype(a.clean) == np.float32 and stream_dtype(b.clean) == np.uint8  # the store's 8-bit arrays
    assert isinstance(b.clean[0].raw(), np.memmap)  # a crop task reads only the rows its patches cover
    ids = np.arange(200)
    pa, pb = cut_patches(ids, a, 16, "dihedral", 3, 1), cut_patches(ids, b, 16, "dihedral", 3, 1)
    for key in ("clean", "noisy"):
        assert pb[key].dtype == np.uint8 and pa[key].dtype == np.float32
        assert np.array_equal(pb[key].astype(np.float32) / np.float32(255), pa[key])  # the same patches, exactly
    # the store at a URI (read whole through pyarrow's filesystem, as from s3://): the same patches
    uri = load_domains(run_cfg(pairs, f"data.prepared=local://{tmp_path / 'store'}")).domains["paired"]
    assert not isinstance(uri.clean[0].raw(), np.memmap) and uri.clean[0].prepared.array.startswith("local://")
    pu = cut_patches(ids, uri, 16, "dihedral", 3, 1)
    assert all(np.array_equal(pu[k], pb[k]) for k in ("clean", "noisy"))
    # a gray run of the RGB files: converted from the arrays (float), still equal to decoding the files
    g1 = load_domains(run_cfg(pairs, "data.color=gray"))
    g2 = load_domains(run_cfg(pairs, "data.color=gray", f"data.prepared={tmp_path / 'store'}"))
    assert stream_dtype(g2.domains["paired"].clean) == np.float32
    assert np.array_equal(np.asarray(g1.domains["paired"].clean[0]), np.asarray(g2.domains["paired"].clean[0]))


def test_stale_missing_and_broken_store_files_are_one_line_naming_them(pairs, tmp_path):
    from raytrain.data.collection import load_domains

    dst = tmp_path / "store"
    prepare(str(pairs), str(dst), progress=False)
    cfg = run_cfg(pairs, f"data.prepared={dst}")
    # a source file changed after it was prepared
    iio.imwrite(pairs / "noisy" / "p2.png", np.zeros((81, 77, 3), np.uint8))
    with pytest.raises(DataError, match=r"noisy/p2.png: changed since it was prepared .*run `raytrain data prepare"):
        load_domains(cfg)
    prepare(str(pairs), str(dst), progress=False)
    # a file the store does not hold
    iio.imwrite(pairs / "clean" / "p9.png", np.zeros((64, 64, 3), np.uint8))
    iio.imwrite(pairs / "noisy" / "p9.png", np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(DataError, match=r"clean/p9.png: not in the prepared store"):
        load_domains(cfg)
    prepare(str(pairs), str(dst), progress=False)
    # a truncated array: named when its pixels are read (a crop task, or here the validation pairs)
    arr = dst / "clean" / "p0.png.npy"
    arr.write_bytes(arr.read_bytes()[:-10])
    with using(str(dst)):
        e = Store(str(dst)).entry(pairs / "clean" / "p0.png")
    with pytest.raises(DataError, match=r"p0.png.npy: truncated \(\d+ of \d+ bytes\), the prepared array of .*p0.png"):
        e.load(str(pairs / "clean" / "p0.png"))
    # not a store, a broken manifest
    with pytest.raises(DataError, match=r"not a prepared store \(no manifest.json\); make it with `raytrain data"):
        Store(str(tmp_path))
    (dst / MANIFEST).write_text("{not json")
    with pytest.raises(DataError, match=r"manifest.json: not a manifest raytrain can read"):
        load_domains(cfg)


def test_the_cli_prepares_and_refuses_bad_folders_in_one_line(pairs, tmp_path, capsys):
    assert main(["data", "prepare", str(pairs), str(tmp_path / "st"), "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "prepared 8 files into" in out and "8 decoded, 0 unchanged" in out and "data.prepared=" in out
    assert main(["data", "prepare", str(tmp_path / "nowhere"), str(tmp_path / "st2")]) == 1
    assert main(["data", "prepare", str(pairs), str(pairs / "inside")]) == 1
    (tmp_path / "empty").mkdir()
    assert main(["data", "prepare", str(tmp_path / "empty"), str(tmp_path / "st3")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and "nowhere: folder not found" in err[0]
    assert "must not be inside the source folder" in err[1] and "empty: no images" in err[2]
    assert not (tmp_path / "st2").exists() and not (tmp_path / "st3").exists()
