"""Images read from their files when their pixels are needed: how a run streams a set too large to hold in memory
(SIDD Medium's 320 pairs of 12 MP are ~90 GB as float32; AIM19's clean HR set ~27 GB).

A :class:`StoredImage` knows its file, its shape (from the file's header) and the steps that turn the file into the
run's pixels (colour conversion, a crop to a multiple of the scale, bicubic down-sampling, a fixed noise realisation,
a tile): the steps run when the pixels are asked for (``np.asarray(img)`` or slicing), in whatever process asks, and
the result stays in that process's small least-recently-used cache (:data:`CACHE_BYTES`). Pickling one carries the
path and the steps, never the pixels, so a domain of thousands of images is a few kilobytes in Ray's object store and
the crop tasks of Ray Data read the images they cut patches from (``data.stream``; data/pipeline.py).

Plain arrays and stored images mix: :func:`lazy_map` and :func:`lazy_crop` apply a step to either, eagerly to an array
and as one more step to a stored image; :func:`pixels` gives the array.
"""

from __future__ import annotations

import mmap
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np

from raytrain.data.decode import read_image, to_color, to_float
from raytrain.data.prepared import Entry, lookup
from raytrain.errors import DataError

CACHE_BYTES = 2**29  # decoded images a process keeps (512 MiB: a 12 MP RGB pair as float32 and its steps)
CACHE_KEEP = 4  # ... and at least this many, whatever their size (a pair's two images and their parents)

_cache: OrderedDict[tuple, np.ndarray] = OrderedDict()
_cache_lock = threading.Lock()


class StoredImage:
    """An (H, W, C) float32 image in [0, 1] read from ``path`` when needed (a root), or ``step`` (a picklable
    callable array -> array) applied to a ``parent`` stored image; ``shape`` is its shape. Every level is cached, so
    the tiles of one file share one read."""

    ndim = 3
    dtype = np.dtype(np.float32)

    def __init__(self, path: str | Path, color: str, shape: tuple[int, ...], key: tuple = (),
                 parent: StoredImage | None = None, step: Callable | None = None,
                 prepared: Entry | None = None):  # fmt: skip
        self.path, self.color, self.shape = str(path), color, tuple(shape)
        self.key, self.parent, self.step = key, parent, step
        self.prepared = prepared  # the file's array in a prepared store (data/prepared.py): read instead of decoding

    def then(self, step: Callable[[np.ndarray], np.ndarray], shape: tuple[int, ...], key: object) -> StoredImage:
        """This image with one more step; ``key`` names the step in the cache (equal keys, equal results)."""
        return StoredImage(self.path, self.color, shape, self.key + (key,), self, step, self.prepared)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        arr = _cached((self.path, self.color, *self.key), lambda: self.read(cached=True))
        return arr if dtype is None else arr.astype(dtype)

    def raw_dtype(self) -> np.dtype | None:
        """uint8 when :meth:`raw` gives the pixels as 8-bit levels without converting them (a prepared 8-bit file
        whose channels the run uses as stored, under crops only), else None."""
        if self.parent is not None:
            return self.parent.raw_dtype() if isinstance(self.step, _Crop) else None
        e = self.prepared
        if e is None or e.dtype != "uint8":
            return None
        return np.dtype(np.uint8) if _channel_view(e.shape, self.color) is not None else None

    def raw(self) -> np.ndarray:
        """The pixels as uint8 levels (float pixels = levels / 255), a view of the prepared array (memory-mapped
        where the store is local: a crop reads only its rows); only where :meth:`raw_dtype` is uint8."""
        if self.parent is not None:
            return self.step(raw_pixels(self.parent))  # the parent's view from the cache: one load per file
        arr = self.prepared.load(self.path)
        arr = arr[..., None] if arr.ndim == 2 else arr
        return arr[..., _channel_view(self.prepared.shape, self.color)]

    def __getitem__(self, index) -> np.ndarray:
        return np.asarray(self)[index]

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"StoredImage({self.path!r}, shape={self.shape}, steps={len(self.key) - 1})"

    def read(self, cached: bool = False) -> np.ndarray:
        """The pixels, computed now (a new, writable array); ``cached``: the parent's from the cache."""
        if self.parent is None and self.prepared is not None:
            from raytrain import locations

            shown = locations.display(self.path)
            arr = to_color(to_float(np.asarray(self.prepared.load(self.path)), shown), self.color, shown)
        elif self.parent is None:
            arr = read_image(self.path, self.color)
        else:
            parent = np.asarray(self.parent) if cached else self.parent.read()
            arr = np.array(self.step(parent), dtype=np.float32, order="C")  # a copy: never a view of the parent
        if arr.shape != self.shape:  # the header or a step's shape rule disagrees with the pixels: say which file
            raise DataError(f"{self.path}: read as {arr.shape}, expected {self.shape} (from its header)")
        return arr


def _channel_view(shape: tuple[int, ...], color: str) -> slice | None:
    """The channels of a stored (H, W[, C]) array that are the run's pixels as they are (alpha dropped), or None
    where the colour must be converted (RGB to gray, gray to RGB)."""
    c = shape[2] if len(shape) == 3 else 1
    keep = c - 1 if c in (2, 4) else c  # gray+alpha, RGBA: drop alpha
    want = 3 if color == "rgb" else 1
    return slice(0, keep) if keep == want else None


def raw_pixels(img) -> np.ndarray:
    """:meth:`StoredImage.raw` from this process's cache (an array: as it is)."""
    if not is_stored(img):
        return img
    return _cached(("raw", img.path, img.color, *img.key), img.raw)


def _held(arr: np.ndarray) -> int:
    """Bytes an array holds in this process's memory: none for a view of a memory-mapped file (the page cache)."""
    base = arr
    while base is not None:
        if isinstance(base, (np.memmap, mmap.mmap)):
            return 0
        base = getattr(base, "base", None)
    return arr.nbytes


def _cached(key: tuple, read: Callable[[], np.ndarray]) -> np.ndarray:
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    arr = read()
    arr.setflags(write=False)  # shared by every caller: nobody may change it in place
    with _cache_lock:
        _cache[key] = arr
        total = sum(_held(a) for a in _cache.values())
        while len(_cache) > CACHE_KEEP and total > CACHE_BYTES:
            _, old = _cache.popitem(last=False)
            total -= _held(old)
    return arr


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()


def header_size(path: str | Path) -> tuple[int, int] | None:
    """(H, W) of an image file (local or at a URI) from its header (PIL reads no pixels), or None when PIL cannot
    say."""
    from PIL import Image as PILImage

    from raytrain import locations

    try:
        with locations.open_input(path) as fh, PILImage.open(fh) as im:
            if getattr(im, "n_frames", 1) != 1:
                return None  # a multi-page TIFF: the decoder decides what it holds
            w, h = im.size
    except Exception:  # not an image PIL knows (or a corrupt one): the full decode says what is wrong
        return None
    return h, w


def open_image(path: str | Path, color: str, lazy: bool):
    """The image at ``path`` (local or a URI): its pixels (``lazy`` False), else a :class:`StoredImage` when the
    header gives its size (the pixels otherwise, so a corrupt file fails here with the decoder's message)."""
    from raytrain import locations

    entry = lookup(path)  # a prepared store is active and holds the file (checked against it): no decoding
    if entry is not None:
        # (mtime, size) in the cache key, as below
        img = StoredImage(path, color, (*entry.shape[:2], 3 if color == "rgb" else 1), key=(locations.stat_key(path),),
                          prepared=entry)  # fmt: skip
        return img if lazy else img.read()
    if not lazy:
        return read_image(path, color)
    if not locations.is_file(path):
        raise DataError(f"{locations.display(path)}: no such image file")
    size = header_size(path)
    if size is None:
        return read_image(path, color)
    if 0 in size:
        raise DataError(f"{locations.display(path)}: cannot decode image (size {size[0]}x{size[1]})")
    # (mtime, size) in the cache key: a rewritten file (a pipeline's synthetic pairs) is read again
    return StoredImage(path, color, (*size, 3 if color == "rgb" else 1), key=(locations.stat_key(path),))


def open_images(paths: list, color: str, lazy: bool) -> list:
    """:func:`open_image` of every path, in order; files at a URI are opened by 16 threads at once (each is a
    request to the object store)."""
    from raytrain import locations

    if not any(locations.is_uri(p) for p in paths):
        return [open_image(p, color, lazy) for p in paths]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(16) as pool:
        return list(pool.map(lambda p: open_image(p, color, lazy), paths))


def is_stored(img) -> bool:
    return isinstance(img, StoredImage)


def pixels(img) -> np.ndarray:
    """The array of an image, stored or not (a stored one's from the cache: read-only)."""
    return np.asarray(img)


def load(img) -> np.ndarray:
    """The array of an image: an array as it is, a stored image read now (writable, not cached)."""
    return img.read() if is_stored(img) else img


def lazy_map(img, step: Callable[[np.ndarray], np.ndarray], shape: tuple[int, ...], key: object):
    """``step(img)``: now for an array, as one more step of a stored image (whose result will have ``shape``)."""
    return img.then(step, shape, key) if is_stored(img) else step(img)


class _Crop:
    def __init__(self, top: int, left: int, h: int, w: int):
        self.box = (top, left, h, w)

    def __call__(self, arr: np.ndarray) -> np.ndarray:
        top, left, h, w = self.box
        return arr[top : top + h, left : left + w]


def lazy_crop(img, top: int, left: int, h: int, w: int):
    """The (h, w) crop at (top, left) of an image, stored or not (a view of an array)."""
    if not is_stored(img):
        return img[top : top + h, left : left + w]
    return img.then(_Crop(top, left, h, w), (h, w, img.shape[2]), ("crop", top, left, h, w))


def source_files(images) -> list[str]:
    """The files the stored images of a list are read from (each once, in order): a prepared image's array."""
    return list(dict.fromkeys(im.prepared.array if im.prepared else im.path for im in images if is_stored(im)))


def stored_bytes(images) -> int:
    """Bytes the images would take as float32 arrays."""
    return sum(int(np.prod(im.shape)) * 4 for im in images if im is not None)


def materialise(*lists: list | None) -> list[list | None]:
    """Every image of the lists as a writable array, image i of every list before image i + 1 of any (a pair's
    images, e.g. a clean image and its noise realisation, share one read of their file through the cache); the
    cache is emptied after."""
    out = [None if images is None else list(images) for images in lists]
    for i in range(max((len(images) for images in out if images is not None), default=0)):
        for images in out:
            if images is not None and i < len(images) and is_stored(images[i]):
                images[i] = np.array(images[i])  # a copy of the cached pixels
    clear_cache()
    return out
