"""The papers' datasets as distributed, read into real (clean, noisy) pairs with the group each pair belongs to
(the scene: pairs of one scene never straddle the validation / training split).

``data.source: sidd:PATH`` - SIDD sRGB, either layout:

- the Small / Medium folders: ``PATH`` is ``SIDD_Small_sRGB_Only`` / ``SIDD_Medium_Srgb`` (or its ``Data``
  folder), one folder per scene instance (``0001_001_S6_00100_00060_3200_L``) holding ``GT_SRGB_010.PNG`` /
  ``NOISY_SRGB_010.PNG`` (Small) or ``0001_GT_SRGB_010.PNG`` / ``0001_NOISY_SRGB_010.PNG`` (Medium); a pair is a
  GT/NOISY file of one folder with the same suffix, its group the folder;
- the validation blocks: ``PATH`` is a folder with ``ValidationGtBlocksSrgb.mat`` and
  ``ValidationNoisyBlocksSrgb.mat`` (uint8, 40 images x 32 blocks x 256 x 256 x 3), MATLAB v5 (``scipy.io``) or
  v7.3 (HDF5, ``h5py``; its axes come reversed); a pair is one block, its group the image (``val_07``).

DND (sRGB benchmark; no ground truth, so no training source): :func:`dnd_crops` reads ``info.mat`` (MATLAB v7.3:
``info.boundingboxes``, one 20 x 4 array of 1-based inclusive [row0, col0, row1, col1] per image) and
``images_srgb/NNNN.mat`` (``InoisySRGB``, float in [0, 1]) and yields each image's crops, as the benchmark's devkit
cuts them; ``raytrain dnd`` denoises them into the submission layout (:mod:`raytrain.submission`).

Every problem of a partial or wrong dataset (a NOISY file without its GT, a ``.mat`` without the expected variable,
blocks of two shapes) is one :class:`~raytrain.errors.DataError` naming the file.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from raytrain.data.images import Image, read_image, to_color, to_float
from raytrain.errors import DataError

KINDS = ("sidd",)
SIDD_MAT = {"ValidationGtBlocksSrgb": "clean", "ValidationNoisyBlocksSrgb": "noisy"}
_SIDD_FILE = re.compile(r"^(?P<pre>(\d+_)?)(?P<kind>GT|NOISY)_SRGB_(?P<id>\d+)\.png$", re.IGNORECASE)


def dataset_kind(source: str) -> tuple[str, str] | None:
    """``("sidd", PATH)`` for ``sidd:PATH``; None for a plain folder, ``samples`` or a URI."""
    kind, sep, path = source.partition(":")
    if not sep or kind not in KINDS or path.startswith("//"):
        return None
    return kind, path


def load_dataset(source: str, color: str) -> tuple[list[tuple[Image, Image]], list[str]]:
    """(pairs, group of each pair) of a ``KIND:PATH`` source, sorted by group then name."""
    kind, path = dataset_kind(source) or (None, source)
    if kind != "sidd":
        raise DataError(f"{source}: not a dataset source (one of {', '.join(k + ':PATH' for k in KINDS)})")
    root = Path(path)
    if not root.exists():
        raise DataError(f"{root}: SIDD path not found")
    if (root / "ValidationGtBlocksSrgb.mat").exists() or (root / "ValidationNoisyBlocksSrgb.mat").exists():
        return sidd_blocks(root, color)
    return sidd_folders(root, color)


# ------------------------------------------------------------------------------------------------ SIDD folders
def sidd_folders(root: Path, color: str) -> tuple[list[tuple[Image, Image]], list[str]]:
    data = root / "Data" if (root / "Data").is_dir() else root
    scenes = sorted(p for p in data.iterdir() if p.is_dir()) if data.is_dir() else []
    if not scenes:
        raise DataError(f"{data}: no SIDD scene folders (expected e.g. 0001_001_S6_00100_00060_3200_L/)")
    pairs, groups = [], []
    for scene in scenes:
        files: dict[tuple[str, str], dict[str, Path]] = {}
        for f in sorted(scene.iterdir()):
            m = _SIDD_FILE.match(f.name)
            if m:
                files.setdefault((m["pre"], m["id"]), {})[m["kind"].upper()] = f
        if not files:
            raise DataError(f"{scene}: no GT_SRGB_*/NOISY_SRGB_* images in this SIDD scene folder")
        for (_, ident), got in sorted(files.items()):
            missing = {"GT", "NOISY"} - set(got)
            if missing:
                have = next(iter(got.values()))
                raise DataError(f"{have}: no matching {missing.pop()}_SRGB_{ident} file in {scene.name}")
            clean, noisy = read_image(got["GT"], color), read_image(got["NOISY"], color)
            if clean.shape != noisy.shape:
                raise DataError(f"{got['NOISY']}: size {noisy.shape[:2]} differs from its GT's {clean.shape[:2]}")
            name = f"{scene.name}_{ident}"
            pairs.append((Image(name, clean), Image(name, noisy)))
            groups.append(scene.name)
    return pairs, groups


# ------------------------------------------------------------------------------------------------ SIDD blocks
def first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [exc.__class__.__name__])[0][:120]


def read_mat_array(path: Path, name: str) -> np.ndarray:
    """Variable ``name`` of a MATLAB file, v5 (scipy) or v7.3 (HDF5 via h5py, axes put back in MATLAB's order)."""
    import scipy.io

    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        found = scipy.io.loadmat(str(path), variable_names=[name])
        if name not in found:
            raise DataError(f"{path}: no variable {name!r} in this .mat file")
        return np.asarray(found[name])
    except NotImplementedError:  # scipy: "Please use HDF reader for matlab v7.3 files"
        pass
    except (ValueError, OSError, TypeError, IndexError, KeyError) as exc:  # scipy's errors on a file that is no .mat
        raise DataError(f"{path}: not a readable MATLAB file ({first_line(exc)})") from None
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if name not in f:
                raise DataError(f"{path}: no variable {name!r} in this .mat file (v7.3)")
            arr = np.asarray(f[name])
    except OSError as exc:
        raise DataError(f"{path}: not a readable MATLAB v7.3 file ({first_line(exc)})") from None
    return arr.transpose(tuple(range(arr.ndim - 1, -1, -1)))  # HDF5 stores MATLAB's column-major axes reversed


def sidd_blocks(root: Path, color: str) -> tuple[list[tuple[Image, Image]], list[str]]:
    arrays = {}
    for var, role in SIDD_MAT.items():
        a = read_mat_array(root / f"{var}.mat", var)
        if a.ndim != 5 or a.shape[-1] != 3:
            raise DataError(f"{root / (var + '.mat')}: {var} has shape {a.shape}, expected (images, blocks, H, W, 3)")
        arrays[role] = a
    if arrays["clean"].shape != arrays["noisy"].shape:
        raise DataError(f"{root / 'ValidationNoisyBlocksSrgb.mat'}: blocks of shape {arrays['noisy'].shape}, "
                        f"the GT blocks are {arrays['clean'].shape}")  # fmt: skip
    pairs, groups = [], []
    n_img, n_blk = arrays["clean"].shape[:2]
    for i in range(n_img):
        for b in range(n_blk):
            name = f"val_{i + 1:02d}_{b + 1:02d}"
            c, n = (to_color(to_float(arrays[r][i, b], name), color, name) for r in ("clean", "noisy"))
            pairs.append((Image(name, c), Image(name, n)))
            groups.append(f"val_{i + 1:02d}")
    return pairs, groups


# ------------------------------------------------------------------------------------------------ DND
def dnd_crops(root: str | Path):
    """Yield ``(image number, [crop, ...])`` for every image of a DND benchmark folder, each crop (H, W, 3) float32."""
    import h5py

    root = Path(root)
    info_path = root / "info.mat"
    if not info_path.is_file():
        raise DataError(f"{info_path}: not found (a DND benchmark folder holds info.mat and images_srgb/)")
    try:
        with h5py.File(info_path, "r") as f:
            if "info" not in f or "boundingboxes" not in f["info"]:
                raise DataError(f"{info_path}: no info.boundingboxes (is this DND's info.mat?)")
            refs = np.asarray(f["info"]["boundingboxes"]).ravel()
            boxes = [np.asarray(f[r]).T.astype(np.int64) for r in refs]  # each (crops, 4), MATLAB's 1-based
    except OSError as exc:
        raise DataError(f"{info_path}: not a readable MATLAB v7.3 file ({first_line(exc)})") from None
    for i, bb in enumerate(boxes, start=1):
        if bb.ndim != 2 or bb.shape[1] != 4:
            raise DataError(f"{info_path}: bounding boxes of image {i} have shape {bb.shape}, expected (crops, 4)")
        path = root / "images_srgb" / f"{i:04d}.mat"
        img = read_mat_array(path, "InoisySRGB")
        if img.ndim != 3 or img.shape[-1] != 3:
            raise DataError(f"{path}: InoisySRGB has shape {img.shape}, expected (H, W, 3)")
        img = np.clip(img.astype(np.float32), 0, 1)
        crops = []
        for r0, c0, r1, c1 in bb:
            if not (1 <= r0 <= r1 <= img.shape[0] and 1 <= c0 <= c1 <= img.shape[1]):
                raise DataError(f"{info_path}: box {[r0, c0, r1, c1]} of image {i} is outside its {img.shape[:2]}")
            crops.append(np.ascontiguousarray(img[r0 - 1 : r1, c0 - 1 : c1]))
        yield i, crops
