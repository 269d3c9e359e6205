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

``data.source: ldct:PATH`` - low-dose CT (the AAPM/Mayo layout of LIR's Table 3): one folder per patient
(``L067``), each with a full-dose and a quarter-dose folder (names containing ``full`` and ``quarter``, e.g.
``full_1mm`` / ``quarter_1mm``) of DICOM slices (``.IMA`` / ``.dcm``, read with pydicom; Hounsfield units from
RescaleSlope / RescaleIntercept) or of 16-bit PNG/TIFF slices (HU = value - ``data.hu_offset``). Slices pair by
InstanceNumber (DICOM) or file order; a pair is (full, quarter) dose, its group the patient. HU are mapped to [0, 1]
through ``data.hu_window`` (clipped), so PSNR / SSIM use the window as their data range.

``data.source: sr:PATH`` with ``data.scale`` - super-resolution pairs (RealSR / DRealSR, AIM19 / NTIRE20
validation sets, for SeNM-VAE's SR tables): :func:`sr_pairs` reads ``PATH`` with HR and
LR folders (``HR`` / ``LR``, ``train_HR`` / ``train_LR``, ...; a file pairs with the same name in the other folder,
``_x1`` / ``_x4`` suffixes aside) or files side by side (RealSR V3: ``Canon_001_HR.png`` beside
``Canon_001_LR4.png``), at any depth; a pair is (HR, LR), its group the folder (the camera). The LR image must be
the HR image's size divided by the scale.

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

from raytrain import locations
from raytrain.data.images import EXTENSIONS, Image, to_color, to_float
from raytrain.data.stored import open_images
from raytrain.errors import DataError, first_line

KINDS = ("sidd", "ldct", "sr")
SIDD_MAT = {"ValidationGtBlocksSrgb": "clean", "ValidationNoisyBlocksSrgb": "noisy"}
_SIDD_FILE = re.compile(r"^(?P<pre>(\d+_)?)(?P<kind>GT|NOISY)_SRGB_(?P<id>\d+)\.png$", re.IGNORECASE)


def dataset_kind(source: str) -> tuple[str, str] | None:
    """``("sidd", PATH)`` for ``sidd:PATH``; None for a plain folder, ``samples`` or a URI."""
    kind, sep, path = source.partition(":")
    if not sep or kind not in KINDS or path.startswith("//"):
        return None
    return kind, path


def load_dataset(source: str, color: str, hu_window: tuple[float, float] = (-160.0, 240.0),
                 hu_offset: float = 1024.0, scale: int = 1, lazy: bool = False
                 ) -> tuple[list[tuple[Image, Image]], list[str]]:  # fmt: skip
    """(pairs, group of each pair) of a ``KIND:PATH`` source, sorted by group then name (``scale``: sr:PATH's).
    ``lazy``: the images of SIDD's folders and of SR sets are :class:`~raytrain.data.stored.StoredImage` (read when
    used; the sizes checked from the files' headers); CT slices and SIDD's ``.mat`` blocks are small and read."""
    kind, path = dataset_kind(source) or (None, source)
    if kind is None:
        raise DataError(f"{source}: not a dataset source (one of {', '.join(k + ':PATH' for k in KINDS)})")
    if kind == "sr":
        pairs, groups = sr_pairs(path, scale, color, lazy)
        if len(set(groups)) == 1:  # one folder (AIM19 / NTIRE20 validation): each image is its own scene
            groups = [hr.name for hr, _ in pairs]
        return pairs, groups
    if kind == "ldct":
        if locations.is_uri(path):
            raise DataError(f"{locations.display(path)}: CT slices (ldct:) are read from a local folder or one every "
                            "node mounts, not from a URI")  # fmt: skip
        return ldct_pairs(Path(path), color, hu_window, hu_offset)
    if not locations.exists(path):
        raise DataError(f"{locations.display(path)}: SIDD path not found")
    if any(locations.is_file(locations.join(path, f"{var}.mat")) for var in SIDD_MAT):
        if locations.is_uri(path):
            raise DataError(f"{locations.display(path)}: SIDD's .mat validation blocks are read from a local folder "
                            "(copy them to the driver's disk); image folders work at a URI")  # fmt: skip
        return sidd_blocks(Path(path), color)
    return sidd_folders(path, color, lazy)


# ------------------------------------------------------------------------------------------------ SIDD folders
def sidd_folders(root: str | Path, color: str, lazy: bool = False) -> tuple[list[tuple[Image, Image]], list[str]]:
    """SIDD's scene folders (``[Data/]SCENE/NNN_GT_SRGB_MMM.PNG`` beside ``..._NOISY_...``), local or at a URI."""
    data = locations.join(root, "Data") if locations.is_dir(locations.join(root, "Data")) else str(root)
    scenes = [n for n, sub in locations.list_dir(data) if sub]
    if not scenes:
        raise DataError(f"{locations.display(data)}: no SIDD scene folders (expected e.g. "
                        "0001_001_S6_00100_00060_3200_L/)")  # fmt: skip
    found = []
    for scene in scenes:
        folder = locations.join(data, scene)
        files: dict[tuple[str, str], dict[str, str]] = {}
        for name, sub in locations.list_dir(folder):
            m = None if sub else _SIDD_FILE.match(name)
            if m:
                files.setdefault((m["pre"], m["id"]), {})[m["kind"].upper()] = locations.join(folder, name)
        if not files:
            raise DataError(f"{locations.display(folder)}: no GT_SRGB_*/NOISY_SRGB_* images in this SIDD scene folder")
        for (_, ident), got in sorted(files.items()):
            missing = {"GT", "NOISY"} - set(got)
            if missing:
                have = locations.display(next(iter(got.values())))
                raise DataError(f"{have}: no matching {missing.pop()}_SRGB_{ident} file in {scene}")
            found.append((scene, ident, got))
    opened = open_images([p for _, _, got in found for p in (got["GT"], got["NOISY"])], color, lazy)
    pairs, groups = [], []
    for k, (scene, ident, got) in enumerate(found):
        clean, noisy = opened[2 * k], opened[2 * k + 1]
        if clean.shape != noisy.shape:
            raise DataError(f"{locations.display(got['NOISY'])}: size {noisy.shape[:2]} differs from its GT's "
                            f"{clean.shape[:2]}")  # fmt: skip
        name = f"{scene}_{ident}"
        pairs.append((Image(name, clean), Image(name, noisy)))
        groups.append(scene)
    return pairs, groups


# ------------------------------------------------------------------------------------------------ SIDD blocks
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
        raise DataError(f"{path}: not a readable MATLAB file ({first_line(exc, 120)})") from None
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if name not in f:
                raise DataError(f"{path}: no variable {name!r} in this .mat file (v7.3)")
            arr = np.asarray(f[name])
    except OSError as exc:
        raise DataError(f"{path}: not a readable MATLAB v7.3 file ({first_line(exc, 120)})") from None
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


# ------------------------------------------------------------------------------------------------ SR pairs
_SR_DIR = re.compile(r"(?i)(^|[_-])(?P<role>hr|lr)($|[_-])")
_SR_STEM = re.compile(r"(?i)[_-](?P<role>hr|lr(?P<lr>\d+)|x(?P<x>\d+))$")


def _sr_role(rel: Path, scale: int) -> tuple[str, tuple[str, ...], str] | None:
    """(role, the folder with its HR/LR part blanked, the stem without its HR/LR suffix) of a file, or None."""
    role, parts = None, list(rel.parent.parts)
    for i, part in enumerate(parts):
        m = _SR_DIR.search(part)
        if m:
            role, parts[i] = m["role"].upper(), _SR_DIR.sub(r"\1*\3", part, count=1)
    stem, m = rel.stem, _SR_STEM.search(rel.stem)
    if m:
        tag = m["role"].lower()
        if tag == "hr" or (m["x"] is not None and int(m["x"]) == 1):
            role = "HR"
        elif (m["lr"] is not None and int(m["lr"]) == scale) or (m["x"] is not None and int(m["x"]) == scale):
            role = "LR"
        else:
            return None  # another scale's LR image (RealSR keeps x2 / x3 / x4 side by side)
        stem = stem[: m.start()]
    return (role, tuple(parts), stem) if role else None


def sr_pairs(
    root: str | Path, scale: int, color: str, lazy: bool = False
) -> tuple[list[tuple[Image, Image]], list[str]]:
    """(HR, LR) pairs of a super-resolution set at ``scale`` (local or at a URI) and each pair's group (its folder),
    sorted."""
    if not locations.is_dir(root):
        raise DataError(f"{locations.display(root)}: SR dataset path not found")
    found: dict[tuple[tuple[str, ...], str], dict[str, str]] = {}
    for rel in locations.walk(root):
        if Path(rel).suffix.lower() in EXTENSIONS:
            got = _sr_role(Path(rel), scale)
            if got:
                found.setdefault(got[1:], {})[got[0]] = locations.join(root, rel)
    if not found:
        raise DataError(
            f"{locations.display(root)}: no SR images (expected HR/ and LR/ folders, or NAME_HR.png beside "
            f"NAME_LR{scale}.png)"
        )
    for got in found.values():
        if len(got) < 2:
            ((role, path),) = got.items()
            other = "LR" if role == "HR" else "HR"
            raise DataError(f"{locations.display(path)}: no matching {other} image (x{scale}) for this {role} one")
    keys = sorted(found)
    opened = open_images([found[k][r] for k in keys for r in ("HR", "LR")], color, lazy)
    pairs, groups = [], []
    for k, (folder, stem) in enumerate(keys):
        got = found[(folder, stem)]
        hr, lr = opened[2 * k], opened[2 * k + 1]
        (big_h, big_w), (h, w) = hr.shape[:2], lr.shape[:2]
        if (big_h, big_w) != (h * scale, w * scale):
            ratio = big_h / h if h else 0.0
            why = (f"the HR image is {ratio:g}x its LR image, data.scale is {scale}"
                   if h and big_h % h == 0 and w and big_w % w == 0 and big_h // h == big_w // w
                   else f"LR {h}x{w} x {scale} is not its HR image's {big_h}x{big_w}")  # fmt: skip
            raise DataError(f"{locations.display(got['LR'])}: {why}")
        group = "/".join(p for p in folder if "*" not in p) or "."
        name = f"{group}/{stem}" if group != "." else stem
        pairs.append((Image(name, hr), Image(name, lr)))
        groups.append(group)
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
        raise DataError(f"{info_path}: not a readable MATLAB v7.3 file ({first_line(exc, 120)})") from None
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


# ------------------------------------------------------------------------------------------------ LDCT
DICOM_EXT = (".ima", ".dcm")
SLICE_EXT = (".png", ".tif", ".tiff")


def read_dicom_hu(path: Path) -> tuple[int, np.ndarray]:
    """(InstanceNumber, Hounsfield units) of one DICOM slice."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path)
        raw = ds.pixel_array.astype(np.float64)
    except (InvalidDicomError, OSError, AttributeError, ValueError) as exc:
        raise DataError(f"{path}: not a readable DICOM slice ({first_line(exc, 120)})") from None
    missing = [t for t in ("RescaleSlope", "RescaleIntercept") if t not in ds]
    if missing:
        raise DataError(f"{path}: no {' or '.join(missing)} tag: its pixels cannot be turned into Hounsfield units")
    return int(ds.get("InstanceNumber", 0)), raw * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


def _dose_slices(folder: Path, hu_offset: float) -> list[tuple[str, np.ndarray]]:
    """(name, HU) of every slice of one dose folder, in slice order."""
    files = sorted(p for p in folder.iterdir() if p.is_file())
    dicom = [p for p in files if p.suffix.lower() in DICOM_EXT]
    if dicom:
        slices = sorted((read_dicom_hu(p) + (p.stem,) for p in dicom), key=lambda t: (t[0], t[2]))
        return [(name, hu) for _, hu, name in slices]
    images = [p for p in files if p.suffix.lower() in SLICE_EXT]
    if not images:
        raise DataError(f"{folder}: no DICOM ({', '.join(DICOM_EXT)}) or 16-bit ({', '.join(SLICE_EXT)}) slices")
    import imageio.v3 as iio

    out = []
    for p in images:
        arr = np.asarray(iio.imread(p))
        if arr.dtype != np.uint16 or arr.ndim != 2:
            raise DataError(f"{p}: a {arr.dtype} image of shape {arr.shape}; CT slices must be 16-bit, one channel")
        out.append((p.stem, arr.astype(np.float64) - hu_offset))
    return out


def window(hu: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Hounsfield units -> [0, 1] through the display window [lo, hi] (clipped), float32 (H, W, 1)."""
    return np.clip((hu - lo) / (hi - lo), 0, 1).astype(np.float32)[..., None]


def ldct_pairs(root: Path, color: str, hu_window: tuple[float, float], hu_offset: float):
    if not root.is_dir():
        raise DataError(f"{root}: LDCT path not found")
    lo, hi = hu_window
    patients = sorted(p for p in root.iterdir() if p.is_dir())
    if not patients:
        raise DataError(f"{root}: no patient folders (expected e.g. L067/full_1mm, L067/quarter_1mm)")
    pairs, groups = [], []
    for patient in patients:
        doses = {}
        for kind in ("full", "quarter"):
            found = sorted(p for p in patient.iterdir() if p.is_dir() and kind in p.name.lower())
            if len(found) != 1:
                raise DataError(f"{patient}: expected one folder whose name contains {kind!r}, found "
                                f"{[p.name for p in found]}")  # fmt: skip
            doses[kind] = (found[0], _dose_slices(found[0], hu_offset))
        (fdir, full), (qdir, quarter) = doses["full"], doses["quarter"]
        if len(full) != len(quarter):
            raise DataError(f"{qdir}: {len(quarter)} slices, its full-dose folder {fdir.name} has {len(full)}")
        for k, ((fname, fhu), (qname, qhu)) in enumerate(zip(full, quarter, strict=True)):
            if fhu.shape != qhu.shape:
                raise DataError(
                    f"{qdir / qname}: slice of size {qhu.shape}, its full-dose slice {fname} is {fhu.shape}"
                )
            name = f"{patient.name}_{k:04d}"
            c, n = (to_color(window(h, lo, hi), color, name) for h in (fhu, qhu))
            pairs.append((Image(name, c), Image(name, n)))
            groups.append(patient.name)
    return pairs, groups
