"""Decoding image files: bytes -> the file's pixels as stored (:func:`decode_native`: what a prepared store keeps,
data/prepared.py) -> float32 (H, W, C) in [0, 1] (:func:`decode`). The bottom of the data layer: it imports no other
module of raytrain.data, so the readers above it (images.py, stored.py, prepared.py) form no import circle.

Conversions (documented, not errors): 16-bit images are scaled by 1/65535; RGBA drops its alpha channel (no
compositing); RGB -> gray uses ITU-R 709 luma (``skimage.color.rgb2gray``); gray -> RGB repeats the channel.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from raytrain.errors import DataError, first_line

EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


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
    return to_color(to_float(decode_native(data, origin), origin), color, origin)


def decode_native(data: bytes, origin: str) -> np.ndarray:
    """PNG/JPEG/TIFF/BMP bytes -> the file's pixels as stored ((H, W) or (H, W, C), uint8 / uint16 / ...): what
    :func:`decode` converts, and what a prepared store keeps (data/prepared.py)."""
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
    return arr


def read_image(path: str | Path, color: str = "gray") -> np.ndarray:
    """An image file, local or at a URI (``s3://bucket/clean/a.png``)."""
    from raytrain import locations

    if not locations.is_file(path):
        raise DataError(f"{locations.display(path)}: no such image file")
    return decode(locations.read_bytes(path), locations.display(path), color)
