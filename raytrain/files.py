"""Reading and writing the user's files: every ``torch.load`` of a user file and every result write goes through here.

- :func:`load_torch`: ``torch.load(..., weights_only=True)``; a missing, unreadable, truncated or refused file (a
  pickle that would run code) becomes one :class:`RaytrainError` line naming the file and what it was meant to be.
- :func:`atomic_write_bytes` / :func:`atomic_save`: write to a hidden temporary name beside the target and rename, so
  readers never see half a file and a good file is never overwritten by a broken one; a write that fails (read-only
  folder, full disk, missing folder) removes its temporary file and becomes one line naming the path and the cause.

No Ray, no MLflow: the core (nets, losses) loads its weight files through this module too.
"""

from __future__ import annotations

import errno
import io
import os
import pickle
from pathlib import Path
from typing import Any

import torch

from raytrain.errors import RaytrainError, first_line

_WRITE_CAUSES = {errno.ENOSPC: "no space left on the device", errno.EROFS: "read-only file system",
                 errno.EACCES: "permission denied", errno.ENOENT: "no such folder", errno.EDQUOT: "disk quota exceeded",
                 errno.ENOTDIR: "a parent is not a folder", errno.EISDIR: "is a folder"}  # fmt: skip


def write_error(path: str | Path, exc: OSError) -> RaytrainError:
    """The one-line error for a failed write of ``path``."""
    cause = _WRITE_CAUSES.get(exc.errno or -1, exc.strerror or exc.__class__.__name__)
    return RaytrainError(f"{path}: cannot write ({cause})")


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def make_dirs(path: str | Path) -> Path:
    """``mkdir -p``; a failure is one line naming the folder."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(path, exc) from None
    return path


def atomic_write_bytes(data: bytes, path: str | Path) -> None:
    """Write ``data`` to ``path`` atomically (temporary file + rename); failures are one line, nothing left behind."""
    path = Path(path)
    tmp = _tmp_name(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise write_error(path, exc) from None


def atomic_write_text(text: str, path: str | Path) -> None:
    atomic_write_bytes(text.encode(), path)


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` atomically (serialised in memory first: a torch file is at most a checkpoint's size)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(buf.getvalue(), path)


def load_torch(path: str | Path, what: str = "a PyTorch file") -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, from a local file or a URI (:mod:`raytrain.locations`); any
    failure is one line: ``PATH: cannot load WHAT (why)``. A pickle that needs more than tensors and plain containers
    is refused by ``weights_only`` and named as such."""
    from raytrain import locations

    if locations.is_uri(path):
        if not locations.is_file(path):
            raise RaytrainError(f"{locations.display(path)}: no such file (expected {what})")
        source: Any = io.BytesIO(locations.read_bytes(path))
        p: Any = locations.display(path)
    else:
        p = source = Path(locations.local_path(path))
        if not p.is_file():
            raise RaytrainError(f"{p}: no such file (expected {what})")
    try:
        return torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - every failure of a user file is the same one line
        if isinstance(exc, pickle.UnpicklingError) and "GLOBAL" in str(exc):
            why = "refused: it holds Python objects other than tensors, which weights_only loading never runs"
        elif isinstance(exc, pickle.UnpicklingError):
            why = "not a PyTorch file, or a damaged one"
        else:
            why = first_line(exc, 120, typed=True)
        raise RaytrainError(f"{p}: cannot load {what} ({why})") from None
