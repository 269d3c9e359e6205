"""Decode once: a folder's image files decoded into arrays every node can read (``raytrain data prepare SRC DST``).

A streamed run (``data.stream``) cuts its patches in Ray Data's tasks, which read their images from the files: every
block decodes its PNGs again (~0.3 s a 12 MP pair, ~100 patches/s). A prepared store holds each image file of
``SRC`` (recursively: ``clean/``, ``noisy/``, a SIDD folder's scenes) as the decoder gives it, an ``.npy`` array of
its native dtype and channels (uint8 for 8-bit files, uint16 for 16-bit ones), at ``DST/<path under SRC>.npy``, and
a ``manifest.json``: per file its size, modification time and SHA-256, and its array's shape, dtype and byte size.

A run with ``data.prepared: DST`` lists and checks its files at ``data.source`` as before, and reads the pixels of
every file the store holds from its array instead of decoding it: a local store is memory-mapped (a task's crops
touch only their rows: no decode, no copy of the image), a store at a URI is read whole (no decode). 8-bit images
then stream as uint8 (see data/pipeline.py). The pixels are the decoder's, exactly (the same float images as reading
the files). The manifest is checked when a run opens a file: a source file changed since it was prepared, a file
the store lacks, or a truncated array is one line naming the file and the fix, never a silently stale pixel.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from raytrain import locations
from raytrain.data.decode import EXTENSIONS, decode_native
from raytrain.errors import DataError

MANIFEST = "manifest.json"
VERSION = 1
SUFFIX = ".npy"


@dataclass(frozen=True)
class Entry:
    """One prepared file: its array's location (in the manifest: its name relative to the store), shape and dtype
    (native: as decoded), the array file's size, and the source file's size and modification time when it was
    prepared (and its SHA-256)."""

    array: str
    shape: tuple[int, ...]
    dtype: str
    array_bytes: int
    size: int
    mtime_ns: int
    sha256: str

    def load(self, origin: str) -> np.ndarray:
        """The native array: memory-mapped from a local store (read-only), read whole from a URI; a truncated or
        unreadable array file is one line naming it."""
        shown = locations.display(self.array)
        try:
            got = locations.stat_key(self.array)[1]
        except Exception:  # noqa: BLE001 - missing or unreachable: said below
            got = -1
        if got != self.array_bytes:
            state = "missing" if got < 0 else f"truncated ({got} of {self.array_bytes} bytes)"
            raise DataError(f"{shown}: {state}, the prepared array of {origin}; run `raytrain data prepare` again")
        try:
            if locations.is_uri(self.array):
                arr = np.lib.format.read_array(io.BytesIO(locations.read_bytes(self.array)), allow_pickle=False)
            else:
                arr = np.load(locations.local_path(self.array), mmap_mode="r", allow_pickle=False)
        except Exception as exc:  # noqa: BLE001 - numpy raises ValueError/OSError/EOFError for broken files
            raise DataError(f"{shown}: cannot read the prepared array of {origin} ({type(exc).__name__}: {exc}); "
                            "run `raytrain data prepare` again") from None  # fmt: skip
        if tuple(arr.shape) != self.shape or str(arr.dtype) != self.dtype:
            raise DataError(f"{shown}: holds {arr.dtype} {tuple(arr.shape)}, the manifest says {self.dtype} "
                            f"{self.shape}; run `raytrain data prepare` again")  # fmt: skip
        return arr


class Store:
    """A prepared store read through its manifest: :meth:`entry` gives the checked :class:`Entry` of a source file."""

    def __init__(self, location: str):
        self.location = str(location)
        shown = locations.display(location)
        where = locations.join(location, MANIFEST)
        if not locations.is_file(where):
            raise DataError(f"{shown}: not a prepared store (no {MANIFEST}); make it with "
                            f"`raytrain data prepare SRC {shown}`")  # fmt: skip
        try:
            doc = json.loads(locations.read_bytes(where))
            self.source = str(doc["source"])
            home = locations.absolute(location)  # arrays are named relative to the store: it can be copied
            self.files = {rel: Entry(**{**e, "shape": tuple(e["shape"]), "array": locations.join(home, e["array"])})
                          for rel, e in doc["files"].items()}  # fmt: skip
            if doc.get("version") != VERSION:
                raise ValueError(f"version {doc.get('version')!r}, expected {VERSION}")
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{locations.display(where)}: not a manifest raytrain can read ({exc}); "
                            f"run `raytrain data prepare SRC {shown}` again") from None  # fmt: skip
        self._root = _norm(self.source)

    def entry(self, path: str | Path) -> Entry | None:
        """The entry of source file ``path``, checked against the file as it is now; None for a file outside the
        store's source folder (read from the file as usual)."""
        p = _norm(path)
        if not p.startswith(self._root + "/"):
            return None
        rel, shown = p[len(self._root) + 1 :], locations.display(path)
        fix = f"run `raytrain data prepare {locations.display(self.source)} {locations.display(self.location)}` again"
        e = self.files.get(rel)
        if e is None:
            raise DataError(f"{shown}: not in the prepared store {locations.display(self.location)}; {fix}")
        mtime_ns, size = locations.stat_key(path)
        if (size, mtime_ns) != (e.size, e.mtime_ns):
            raise DataError(f"{shown}: changed since it was prepared (size {e.size} -> {size} bytes, modified "
                            f"after the store was made); {fix}")  # fmt: skip
        return e


def _norm(loc: str | Path) -> str:
    """A location as an absolute path or URI without a trailing '/' (how the store and the run name the same file)."""
    return locations.absolute(loc).rstrip("/")


# ------------------------------------------------------------------------------------------------ the active store
_active: list[Store] = []


class using:  # noqa: N801 - used as a context manager, like open()
    """``with using(location):`` the images opened inside read their pixels from the prepared store at ``location``
    (None: from their files). The store travels inside each opened image (its entry), so Ray Data's tasks on other
    nodes need no manifest."""

    def __init__(self, location: str | None):
        self.store = Store(location) if location else None

    def __enter__(self) -> Store | None:
        if self.store is not None:
            _active.append(self.store)
        return self.store

    def __exit__(self, *exc) -> None:
        if self.store is not None:
            _active.remove(self.store)


def lookup(path: str | Path) -> Entry | None:
    """The checked entry of ``path`` in the active store, if there is one and it holds the file."""
    return _active[-1].entry(path) if _active else None


# ------------------------------------------------------------------------------------------------ preparing
def _prepare_one(job: tuple[str, str, str]) -> dict:
    """Decode one file and write its array (atomically where local); its manifest entry."""
    src, rel, array = job  # array: its location (written) and, in the entry, its name relative to the store
    data = locations.read_bytes(src)
    mtime_ns, size = locations.stat_key(src)
    arr = np.ascontiguousarray(decode_native(data, locations.display(src)))
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    locations.write_bytes(array, buf.getvalue())
    entry = Entry(rel + SUFFIX, tuple(arr.shape), str(arr.dtype), buf.tell(), size, mtime_ns,
                  hashlib.sha256(data).hexdigest())  # fmt: skip
    return {"rel": rel, **asdict(entry)}


def prepare(src: str, dst: str, workers: int | None = None, progress: bool = True) -> dict:
    """Decode every image file under ``src`` into the store ``dst`` (see the module's docstring). A store prepared
    before from the same source keeps the arrays of the files that did not change (size and modification time) and
    drops those of files that are gone. The manifest is written last: a store interrupted while preparing has none
    (or its previous one, which does not list the new arrays). Returns counts and bytes."""
    from tqdm import tqdm

    shown = locations.display(src)
    if not locations.is_dir(src):
        raise DataError(f"{shown}: folder not found" if not locations.exists(src) else f"{shown}: not a folder")
    if _norm(dst).startswith(_norm(src) + "/") or _norm(dst) == _norm(src):
        raise DataError(f"{locations.display(dst)}: the store must not be inside the source folder {shown}")
    rels = [r for r in locations.walk(src) if Path(r).suffix.lower() in EXTENSIONS]
    if not rels:
        raise DataError(f"{shown}: no images ({', '.join(EXTENSIONS)}) under this folder")
    old: dict[str, Entry] = {}
    if locations.is_file(locations.join(dst, MANIFEST)):
        try:
            before = Store(dst)
            old = before.files if _norm(before.source) == _norm(src) else {}
        except DataError:
            old = {}
    files, jobs = {}, []
    for rel in rels:
        source, array = locations.join(src, rel), locations.join(dst, rel + SUFFIX)
        e = old.get(rel)
        mtime_ns, size = locations.stat_key(source)
        if e is not None and (e.size, e.mtime_ns) == (size, mtime_ns) and _array_ok(e):
            files[rel] = asdict(e) | {"array": rel + SUFFIX}
        else:
            jobs.append((source, rel, array))
    locations.make_dirs(dst)
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs) or 1))
    bar = tqdm(total=len(jobs), desc="prepare", unit="img", disable=None if progress else True)
    try:
        if workers == 1:
            done = map(_prepare_one, jobs)
        else:
            pool = ProcessPoolExecutor(workers)
            done = pool.map(_prepare_one, jobs)
        for got in done:
            files[got.pop("rel")] = got
            bar.update(1)
    finally:
        bar.close()
        if workers > 1:
            pool.shutdown(cancel_futures=True)
    for rel in set(old) - set(files):  # gone from the source: its array goes too
        locations.remove(old[rel].array)
    doc = {"version": VERSION, "source": locations.absolute(src), "files": dict(sorted(files.items()))}
    locations.write_text(locations.join(dst, MANIFEST), json.dumps(doc, indent=1))
    removed = len(set(old) - set(files))
    total = sum(f["array_bytes"] for f in files.values())
    return {"files": len(files), "decoded": len(jobs), "kept": len(files) - len(jobs), "removed": removed,
            "array_bytes": total}  # fmt: skip


def _array_ok(e: Entry) -> bool:
    try:
        return locations.stat_key(e.array)[1] == e.array_bytes
    except Exception:  # noqa: BLE001
        return False
