"""Reading image collections: folders (local, mounted, or at a URI such as ``s3://bucket/clean``, through
:mod:`raytrain.locations`), or the offline samples bundled in scikit-image and PyWavelets. Every image comes back
as float32 (H, W, C) in [0, 1] with C = 1 (gray) or 3 (RGB).

Conversions (documented, not errors): 16-bit images are scaled by 1/65535; RGBA drops its alpha channel (no
compositing); RGB -> gray uses ITU-R 709 luma (``skimage.color.rgb2gray``); gray -> RGB repeats the channel.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from raytrain.data.decode import EXTENSIONS, decode, read_image, to_color, to_float  # noqa: F401 - re-exported
from raytrain.data.stored import is_stored, open_images
from raytrain.errors import DataError

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


def to_uint8(img: np.ndarray) -> np.ndarray:
    """[0, 1] float (H, W, C) -> uint8, clipped and rounded; one channel comes out (H, W), as image files hold it."""
    return to_uint(img, 8)


def quantize8(img: np.ndarray) -> np.ndarray:
    """Clip to [0, 1] and round to 8-bit levels, still float: what an image written as PNG holds."""
    return quantize(img, 8)


def quantize(img: np.ndarray, bits: int = 8) -> np.ndarray:
    """Clip to [0, 1] and round to ``bits``-bit levels (8 or 16), still float: what a PNG of that depth holds."""
    top = 2.0**bits - 1
    return np.round(np.clip(img, 0, 1) * top) / top


def to_uint(img: np.ndarray, bits: int = 8) -> np.ndarray:
    """[0, 1] float (H, W, C) -> uint8 or (``bits`` 16) uint16 levels, clipped and rounded; one channel comes out
    (H, W), as image files hold it."""
    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16 (got {bits})")
    arr = np.round(np.clip(img, 0, 1) * (2.0**bits - 1)).astype(np.uint8 if bits == 8 else np.uint16)
    return arr[..., 0] if arr.ndim == 3 and arr.shape[-1] == 1 else arr


def list_images(folder: str | Path) -> list[str]:
    """The image files of a folder (not recursive), local or at a URI, sorted, as locations; a clear error for a
    missing or empty folder."""
    from raytrain import locations

    shown = locations.display(folder)
    if not locations.exists(folder):
        raise DataError(f"{shown}: folder not found")
    if not locations.is_dir(folder):
        raise DataError(f"{shown}: not a folder")
    files = [locations.join(folder, n) for n, sub in locations.list_dir(folder)
             if not sub and Path(n).suffix.lower() in EXTENSIONS]  # fmt: skip
    if not files:
        raise DataError(f"{shown}: no images ({', '.join(EXTENSIONS)}) in this folder")
    return files


def stem(location: str | Path) -> str:
    """A file's name without its extension (an image's name in a collection)."""
    from raytrain import locations

    return Path(locations.name(location)).stem


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


def load_collection(source: str, color: str = "gray", max_size: int | None = None, lazy: bool = False) -> list[Image]:
    """Load a whole collection: ``samples``, or a folder, local or at a URI (``s3://bucket/clean``: read where it is,
    never copied). ``lazy``: the images are :class:`~raytrain.data.stored.StoredImage` (read when used, by whichever
    process cuts their patches: Ray Data's tasks on any node)."""
    if source == "samples":
        images = load_samples(color)
    else:
        files = list_images(source)
        images = [Image(stem(f), img) for f, img in zip(files, open_images(files, color, lazy), strict=True)]
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
    if is_stored(img):
        import functools

        s = max_size / max(img.shape[:2])
        shape = (*(max(1, int(np.round(s * n))) for n in img.shape[:2]), img.shape[2])
        return img.then(functools.partial(shrink, max_size=max_size), shape, ("shrink", max_size))
    from skimage.transform import rescale

    scale = max_size / max(img.shape[:2])
    out = rescale(img, scale, anti_aliasing=True, channel_axis=-1, preserve_range=True)
    if is_8bit(img):  # an 8-bit image resized stays 8-bit (as an image tool saves it): it travels as uint8
        out = quantize8(out)
    return np.ascontiguousarray(np.clip(out, 0, 1), dtype=np.float32)


def levels8(img: np.ndarray) -> np.ndarray | None:
    """A float32 image in [0, 1] whose every pixel is an 8-bit level k / 255 (a decoded 8-bit file, quantised noise)
    as its uint8 levels, exactly; None for any other image."""
    if not isinstance(img, np.ndarray) or img.dtype != np.float32:
        return None
    levels = np.round(img * np.float32(255.0))
    exact = levels.min(initial=0) >= 0 and levels.max(initial=0) <= 255 and np.array_equal(levels / 255, img)
    return levels.astype(np.uint8) if exact else None


def is_8bit(img: np.ndarray) -> bool:
    """Whether :func:`levels8` holds ``img`` exactly."""
    return levels8(img) is not None


def bit_depth(images) -> int:
    """8 when every image (float, [0, 1]) is on the 8-bit levels, else 16: the depth a camera's files need."""
    return 8 if all(is_8bit(np.asarray(im, np.float32)) for im in images) else 16


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
