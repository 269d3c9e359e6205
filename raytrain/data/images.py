"""Reading image collections: folders, any URI Ray Data reads, or the offline samples bundled in scikit-image and
PyWavelets. Every image comes back as float32 (H, W, C) in [0, 1] with C = 1 (gray) or 3 (RGB).

Conversions (documented, not errors): 16-bit images are scaled by 1/65535; RGBA drops its alpha channel (no
compositing); RGB -> gray uses ITU-R 709 luma (``skimage.color.rgb2gray``); gray -> RGB repeats the channel.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from raytrain.errors import DataError, first_line

EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")

# Natural photographs bundled with the packages (no download): (module, function).
SAMPLES = [
    ("skimage", "astronaut"), ("skimage", "camera"), ("skimage", "chelsea"), ("skimage", "coffee"),
    ("skimage", "rocket"), ("skimage", "brick"), ("skimage", "grass"), ("skimage", "gravel"), ("skimage", "moon"),
    ("skimage", "coins"), ("skimage", "clock"), ("skimage", "hubble_deep_field"),
    ("skimage", "immunohistochemistry"), ("skimage", "retina"), ("skimage", "stereo_motorcycle"),
    ("pywt", "aero"), ("pywt", "ascent"),
]  # fmt: skip


@dataclass
class Image:
    """One image of a collection: a name (file stem) and its pixels, float32 (H, W, C) in [0, 1]."""

    name: str
    pixels: np.ndarray


def to_float(arr: np.ndarray, origin: str) -> np.ndarray:
    """Integer/bool/float pixels -> float32 in [0, 1], by bit depth."""
    if arr.dtype == np.bool_:
        return arr.astype(np.float32)
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype in (np.uint16, np.int32, np.uint32) or (arr.dtype == np.int64):
        top = 65535.0 if arr.max(initial=0) <= 65535 else float(np.iinfo(arr.dtype).max)
        return (arr.astype(np.float64) / top).astype(np.float32)
    if np.issubdtype(arr.dtype, np.floating):
        a = arr.astype(np.float32)
        if a.size and (np.nanmin(a) < -1e-3 or np.nanmax(a) > 1 + 1e-3):
            raise DataError(f"{origin}: floating-point pixels outside [0, 1] (min {a.min():.3g}, max {a.max():.3g})")
        return np.clip(a, 0, 1)
    raise DataError(f"{origin}: unsupported pixel type {arr.dtype}")


def to_uint8(img: np.ndarray) -> np.ndarray:
    """[0, 1] float (H, W, C) -> uint8, clipped and rounded; one channel comes out (H, W), as image files hold it."""
    arr = np.round(np.clip(img, 0, 1) * 255.0).astype(np.uint8)
    return arr[..., 0] if arr.ndim == 3 and arr.shape[-1] == 1 else arr


def quantize8(img: np.ndarray) -> np.ndarray:
    """Clip to [0, 1] and round to 8-bit levels, still float: what an image written as PNG holds."""
    return np.round(np.clip(img, 0, 1) * 255.0) / 255.0


def to_color(arr: np.ndarray, color: str, origin: str) -> np.ndarray:
    """(H, W[, C]) float -> (H, W, 1) for gray or (H, W, 3) for rgb; RGBA loses alpha."""
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 2, 3, 4):
        raise DataError(f"{origin}: expected a gray or RGB image, got shape {arr.shape}")
    if arr.shape[-1] in (2, 4):  # gray+alpha or RGBA: drop alpha
        arr = arr[..., :-1]
    if color == "gray" and arr.shape[-1] == 3:
        from skimage.color import rgb2gray

        arr = rgb2gray(arr)[..., None]
    elif color == "rgb" and arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return np.ascontiguousarray(arr, dtype=np.float32)


def decode(data: bytes, origin: str, color: str) -> np.ndarray:
    """Decode PNG/JPEG/TIFF/BMP bytes (8 or 16 bit) -> float32 (H, W, C)."""
    if not data:
        raise DataError(f"{origin}: empty file (0 bytes)")
    import imageio.v3 as iio

    try:
        arr = iio.imread(io.BytesIO(data), extension=Path(origin).suffix.lower() or None)
    except Exception as exc:  # imageio raises many types for truncated/corrupt files
        raise DataError(f"{origin}: cannot decode image ({first_line(exc, 120, typed=True)})") from None
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[-1] not in (1, 2, 3, 4):
        arr = np.moveaxis(arr, 0, -1)  # channel-first TIFF
    return to_color(to_float(arr, origin), color, origin)


def read_image(path: str | Path, color: str = "gray") -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such image file")
    return decode(p.read_bytes(), str(p), color)


def list_images(folder: str | Path) -> list[Path]:
    """Image files of a folder (not recursive), sorted; a clear error for a missing or empty folder."""
    f = Path(folder)
    if not f.exists():
        raise DataError(f"{f}: folder not found")
    if not f.is_dir():
        raise DataError(f"{f}: not a folder")
    files = sorted(p for p in f.iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS)
    if not files:
        raise DataError(f"{f}: no images ({', '.join(EXTENSIONS)}) in this folder")
    return files


def is_uri(source: str) -> bool:
    return "://" in source and not source.startswith("file://")


def load_samples(color: str) -> list[Image]:
    """The bundled offline photographs (17 images, 300..1411 px)."""
    import pywt.data
    import skimage.data

    out = []
    for module, fn in SAMPLES:
        arr = getattr(skimage.data if module == "skimage" else pywt.data, fn)()
        arr = arr[0] if isinstance(arr, tuple) else arr  # stereo_motorcycle returns (left, right, disparity)
        out.append(Image(fn, to_color(to_float(np.asarray(arr), fn), color, fn)))
    return out


def _read_uri(source: str, color: str) -> list[Image]:
    import ray

    ds = ray.data.read_binary_files(source, include_paths=True, file_extensions=[e[1:] for e in EXTENSIONS])
    rows = sorted(ds.take_all(), key=lambda r: r["path"])
    if not rows:
        raise DataError(f"{source}: no images found")
    return [Image(Path(r["path"]).stem, decode(r["bytes"], r["path"], color)) for r in rows]


def load_collection(source: str, color: str = "gray", max_size: int | None = None, lazy: bool = False) -> list[Image]:
    """Load a whole collection: ``samples``, a local folder, or a URI (``s3://...``, ``gs://...``) via Ray Data.
    ``lazy``: a local folder's images are :class:`~raytrain.data.stored.StoredImage` (read when used)."""
    if source == "samples":
        images = load_samples(color)
    elif is_uri(source):
        images = _read_uri(source, color)
    else:
        from raytrain.data.stored import open_image

        folder = source[len("file://") :] if source.startswith("file://") else source
        images = [Image(p.stem, open_image(p, color, lazy)) for p in list_images(folder)]
    names = [im.name for im in images]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise DataError(f"{source}: several files share the name stem(s) {dup[:5]}")
    return [Image(im.name, shrink(im.pixels, max_size)) for im in images] if max_size else images


def shrink(img: np.ndarray, max_size: int | None) -> np.ndarray:
    """Downscale (anti-aliased) so that the longer side is at most ``max_size``; smaller images are kept (a stored
    image gets the resize as a step)."""
    if max_size is None or max(img.shape[:2]) <= max_size:
        return img
    from raytrain.data.stored import is_stored

    if is_stored(img):
        import functools

        s = max_size / max(img.shape[:2])
        shape = (*(max(1, int(np.round(s * n))) for n in img.shape[:2]), img.shape[2])
        return img.then(functools.partial(shrink, max_size=max_size), shape, ("shrink", max_size))
    from skimage.transform import rescale

    scale = max_size / max(img.shape[:2])
    out = rescale(img, scale, anti_aliasing=True, channel_axis=-1, preserve_range=True)
    return np.ascontiguousarray(np.clip(out, 0, 1), dtype=np.float32)


def load_pairs(clean_source: str, noisy_source: str, color: str, scale: int = 1, lazy: bool = False
               ) -> list[tuple[Image, Image]]:  # fmt: skip
    """Real pairs: two folders whose images share names and sizes (with ``scale`` > 1: each noisy image is its clean
    one's size / scale, an (HR, LR) pair). Not resized (that would alter the noise)."""
    clean = {im.name: im for im in load_collection(clean_source, color, lazy=lazy)}
    noisy = {im.name: im for im in load_collection(noisy_source, color, lazy=lazy)}
    only_c, only_n = sorted(set(clean) - set(noisy)), sorted(set(noisy) - set(clean))
    if only_c or only_n:
        raise DataError(f"{noisy_source}: pairs do not match by name: clean-only {only_c[:5]}, noisy-only {only_n[:5]}")
    for name in sorted(clean):
        (h, w), (nh, nw) = clean[name].pixels.shape[:2], noisy[name].pixels.shape[:2]
        if (nh * scale, nw * scale) != (h, w):
            want = "differs from the clean image's" if scale == 1 else f"x {scale} is not the clean (HR) image's"
            raise DataError(f"{noisy_source}/{name}: size {(nh, nw)} {want} {(h, w)}")
    return [(clean[n], noisy[n]) for n in sorted(clean)]


def check_min_size(images: list[Image], patch: int, source: str) -> None:
    for im in images:
        h, w = im.pixels.shape[:2]
        if h < patch or w < patch:
            raise DataError(f"{source}/{im.name}: image is {h}x{w}, smaller than the {patch}x{patch} patch")
