"""Locations: where runs, checkpoints, outputs and data live. A location is a local path (or one every node mounts,
e.g. NFS) or a URI of a filesystem pyarrow reads, as Ray's ``storage_path`` is: ``s3://bucket/prefix``, ``gs://``,
``abfs://``, ``hdfs://``, with pyarrow's options in the query (``s3://bucket/runs?endpoint_override=HOST:PORT&
scheme=http``). Credentials come from each process's environment, as Ray's storage takes them (an instance role,
``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``, ...): a node started without them cannot read or write.

No URI ever passes through :mod:`pathlib` (``Path("s3://b/k")`` is ``s3:/b/k``): :func:`join`, :func:`name` and
:func:`parent` keep the scheme and the query; every read and write goes through :func:`resolve`'s filesystem. A
failure is one :class:`~raytrain.errors.RaytrainError` line naming the location, what went wrong (no such bucket,
credentials refused, unreachable endpoint) and the fix. No Ray, no MLflow (the core loads user files through here).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from raytrain.errors import RaytrainError, first_line


def is_uri(loc: str | Path) -> bool:
    """Whether ``loc`` names a remote filesystem (``scheme://...``; ``file://`` is a local path)."""
    s = str(loc)
    return "://" in s and not s.startswith("file://")


def local_path(loc: str | Path) -> str:
    """A local location as a plain path (``file://`` dropped)."""
    s = str(loc)
    return s[len("file://") :] if s.startswith("file://") else s


def _split(uri: str) -> tuple[str, str, str]:
    """``scheme://bucket/key?query`` -> (``scheme://``, ``bucket/key``, ``?query`` or '')."""
    scheme, rest = uri.split("://", 1)
    rest, _, query = rest.partition("?")
    return f"{scheme}://", rest, f"?{query}" if query else ""


def join(loc: str | Path, *parts: str) -> str:
    """``loc/part/...``: a URI keeps its scheme and query, a local path is joined as a path."""
    s = str(loc)
    if not is_uri(s):
        return os.path.join(local_path(s), *parts)
    scheme, path, query = _split(s)
    tail = "/".join(p.strip("/") for p in parts if p.strip("/"))
    return f"{scheme}{path.rstrip('/')}/{tail}{query}" if tail else s


def name(loc: str | Path) -> str:
    """The last component (a file or folder name)."""
    s = str(loc)
    if is_uri(s):
        return _split(s)[1].rstrip("/").rsplit("/", 1)[-1]
    return os.path.basename(os.path.normpath(local_path(s)))


def parent(loc: str | Path) -> str:
    s = str(loc)
    if not is_uri(s):
        return os.path.dirname(os.path.normpath(local_path(s)))
    scheme, path, query = _split(s)
    return f"{scheme}{path.rstrip('/').rsplit('/', 1)[0]}{query}"


def absolute(loc: str | Path) -> str:
    """A URI as it is; a local path made absolute (Tune trials and Ray workers run in other working directories)."""
    return str(loc) if is_uri(loc) else str(Path(local_path(loc)).resolve())


SECRET_OPTIONS = ("access_key", "secret_key", "session_token", "token", "password", "sas", "account_key")


def display(loc: str | Path) -> str:
    """``loc`` for messages and records: a URI without the options of its query that hold secrets (``secret_key``,
    ...); the others (``endpoint_override``, ``scheme``, ``region``) stay, so the location can be used as printed."""
    s = str(loc)
    if not is_uri(s) or "?" not in s:
        return s
    base, query = s.split("?", 1)
    kept = [kv for kv in query.split("&") if kv and kv.split("=", 1)[0].lower() not in SECRET_OPTIONS]
    return f"{base}?{'&'.join(kept)}" if kept else base


BUCKET_SCHEMES = ("s3://", "gs://", "gcs://", "abfs://", "abfss://", "az://")

_filesystems: dict[tuple[str, str, str], tuple[object, bool]] = {}


def resolve(loc: str | Path):
    """(pyarrow filesystem, path on it) of a location, as Ray resolves a ``storage_path``. A filesystem is made once
    per scheme, bucket (host) and options: pyarrow may ask the object store for the bucket's region when it makes
    one."""
    import pyarrow.fs as pafs

    s = str(loc)
    if not is_uri(s):
        return pafs.LocalFileSystem(), str(Path(local_path(s)).resolve())
    scheme, path, query = _split(s)
    host, _, rest = path.partition("/")
    if not host and scheme in BUCKET_SCHEMES:
        raise RaytrainError(f"{display(s)}: a URI with no bucket; expected {scheme}BUCKET/PREFIX")
    key = (scheme, host, query)
    if key not in _filesystems:
        try:
            fs, got = pafs.FileSystem.from_uri(s)
        except (OSError, ValueError, TypeError) as exc:
            raise RaytrainError(f"{display(s)}: cannot open this filesystem ({first_line(exc, 160)}); check the "
                                "URI's scheme and options (e.g. ?endpoint_override=HOST:PORT&scheme=http)"
                                ) from None  # fmt: skip
        _filesystems[key] = (fs, bool(host) and got.lstrip("/").startswith(host))  # paths hold the bucket (S3, GCS)
    fs, with_host = _filesystems[key]
    fs_path = f"{host}/{rest}" if with_host else f"/{rest}"
    return fs, fs_path.rstrip("/") or "/"


def location_error(loc: str | Path, exc: BaseException, doing: str = "cannot use") -> RaytrainError:
    """One line for a failed access of ``loc``: the cause in words and the fix."""
    text = str(exc)
    causes = (
        (("NO_SUCH_BUCKET", "NoSuchBucket", "bucket does not exist"), "the bucket does not exist: create it first"),
        (("ACCESS_DENIED", "AccessDenied", "INVALID_ACCESS_KEY", "InvalidAccessKeyId", "SIGNATURE_DOES_NOT_MATCH",
          "SignatureDoesNotMatch", "HTTP status 403"),
         "credentials refused: give this node valid credentials (e.g. AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)"),
        (("NETWORK_CONNECTION", "Couldn't connect", "Connection refused", "curlCode: 7", "Could not resolve"),
         "the endpoint is unreachable: check the URI's host and endpoint_override"),
    )  # fmt: skip
    for needles, why in causes:
        if any(n in text for n in needles):
            return RaytrainError(f"{display(loc)}: {doing} ({why})")
    if isinstance(exc, FileNotFoundError):
        return RaytrainError(f"{display(loc)}: {doing} (not found)")
    if isinstance(exc, PermissionError):
        return RaytrainError(f"{display(loc)}: {doing} (permission denied)")
    return RaytrainError(f"{display(loc)}: {doing} ({first_line(exc, 160, typed=True)})")


@contextmanager
def _errors(loc: str | Path, doing: str) -> Iterator[None]:
    try:
        yield
    except RaytrainError:
        raise
    except (OSError, ValueError) as exc:
        raise location_error(loc, exc, doing) from None


def _info(loc: str | Path):
    fs, path = resolve(loc)
    with _errors(loc, "cannot read"):
        return fs.get_file_info(path)


def exists(loc: str | Path) -> bool:
    import pyarrow.fs as pafs

    return _info(loc).type != pafs.FileType.NotFound


def is_file(loc: str | Path) -> bool:
    import pyarrow.fs as pafs

    return _info(loc).type == pafs.FileType.File


def is_dir(loc: str | Path) -> bool:
    """A folder (on object stores: a prefix that holds something)."""
    import pyarrow.fs as pafs

    return _info(loc).type == pafs.FileType.Directory


def stat_key(loc: str | Path) -> tuple[int, int]:
    """(mtime in ns, size) of a file: what a cache keys on, so a rewritten file is read again."""
    info = _info(loc)
    return (int(info.mtime_ns or 0), int(info.size or 0))


def list_dir(loc: str | Path) -> list[tuple[str, bool]]:
    """(name, is_folder) of the entries of a folder, sorted by name; [] when it does not exist."""
    import pyarrow.fs as pafs

    fs, path = resolve(loc)
    with _errors(loc, "cannot list"):
        infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    return sorted((i.base_name, i.type == pafs.FileType.Directory) for i in infos)


def walk(loc: str | Path) -> list[str]:
    """The files under a folder, recursively, as paths relative to it ('/'-separated), sorted; [] when none."""
    import pyarrow.fs as pafs

    fs, path = resolve(loc)
    with _errors(loc, "cannot list"):
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    base = path.rstrip("/") + "/"
    return sorted(i.path[len(base) :] for i in infos if i.type == pafs.FileType.File and i.path.startswith(base))


def read_bytes(loc: str | Path) -> bytes:
    fs, path = resolve(loc)
    with _errors(loc, "cannot read"):
        with fs.open_input_stream(path) as fh:
            return fh.read()


@contextmanager
def open_input(loc: str | Path):
    """A seekable binary file (PIL reads an image header through it without fetching the pixels)."""
    fs, path = resolve(loc)
    with _errors(loc, "cannot read"):
        fh = fs.open_input_file(path)
    try:
        yield fh
    finally:
        fh.close()


def write_bytes(loc: str | Path, data: bytes) -> None:
    """Write a file whole: a local one atomically (temporary name + rename), an object in one upload (an object
    store shows an object only once it is complete). Parents are created."""
    if not is_uri(loc):
        from raytrain.files import atomic_write_bytes
        from raytrain.files import make_dirs as make_local_dirs

        make_local_dirs(Path(local_path(loc)).parent)
        atomic_write_bytes(data, local_path(loc))
        return
    fs, path = resolve(loc)
    with _errors(loc, "cannot write"):
        with fs.open_output_stream(path) as fh:
            fh.write(data)


def write_text(loc: str | Path, text: str) -> None:
    write_bytes(loc, text.encode())


def make_dirs(loc: str | Path) -> None:
    fs, path = resolve(loc)
    with _errors(loc, "cannot create"):
        fs.create_dir(path, recursive=True)


def remove(loc: str | Path) -> None:
    """Delete a file or a folder and everything in it; nothing there is not an error."""
    import pyarrow.fs as pafs

    fs, path = resolve(loc)
    with _errors(loc, "cannot delete"):
        kind = fs.get_file_info(path).type
        if kind == pafs.FileType.Directory:
            fs.delete_dir(path)
        elif kind == pafs.FileType.File:
            fs.delete_file(path)


def upload(local_dir: str | Path, loc: str | Path) -> None:
    """Copy a local folder's files to ``loc`` (created; files there with the same names are replaced)."""
    import pyarrow.fs as pafs

    fs, path = resolve(loc)
    with _errors(loc, "cannot write"):
        fs.create_dir(path, recursive=True)
        pafs.copy_files(str(Path(local_dir).resolve()), path, source_filesystem=pafs.LocalFileSystem(),
                        destination_filesystem=fs)  # fmt: skip


def download(loc: str | Path, local_dir: str | Path) -> Path:
    """Copy the folder at ``loc`` into ``local_dir`` (created); returns ``local_dir``."""
    import pyarrow.fs as pafs

    fs, path = resolve(loc)
    Path(local_dir).mkdir(parents=True, exist_ok=True)
    with _errors(loc, "cannot read"):
        pafs.copy_files(path, str(Path(local_dir).resolve()), source_filesystem=fs,
                        destination_filesystem=pafs.LocalFileSystem())  # fmt: skip
    return Path(local_dir)


def check_writable(loc: str | Path, what: str) -> None:
    """Write and delete a probe file under ``loc``: a missing bucket, refused credentials or an unreachable endpoint
    is one line here, before anything starts, instead of a failure at the first checkpoint."""
    probe = join(loc, f".raytrain-probe-{uuid.uuid4().hex[:12]}")
    try:
        write_bytes(probe, b"raytrain")
        remove(probe)
    except RaytrainError as exc:
        raise RaytrainError(f"{what}: {exc}") from None


class OutputFolder:
    """A folder of results (tables, pictures, pair sets) at a location. Files are written under :attr:`local`: the
    folder itself when it is local, a private temporary folder when it is a URI, copied there by :meth:`publish`
    (and removed by :meth:`close`). Code that writes results writes plain local files either way."""

    def __init__(self, loc: str | Path):
        self.loc = absolute(loc)
        if is_uri(self.loc):
            self.local = Path(tempfile.mkdtemp(prefix="raytrain-out-"))
        else:
            from raytrain.files import make_dirs as make_local_dirs

            self.local = make_local_dirs(self.loc)

    def __truediv__(self, part: str) -> Path:
        return self.local / part

    def where(self, part: str = "") -> str:
        """The location of a file of this folder (what to print or record)."""
        return join(self.loc, part) if part else self.loc

    def publish(self, *parts: str) -> None:
        """Copy the named files (all of them when none is named) to the location; a no-op for a local folder."""
        if not is_uri(self.loc):
            return
        if not parts:
            upload(self.local, self.loc)
            return
        for part in parts:
            if (self.local / part).is_file():
                write_bytes(join(self.loc, part), (self.local / part).read_bytes())

    def close(self) -> None:
        if is_uri(self.loc):
            shutil.rmtree(self.local, ignore_errors=True)

    def __repr__(self) -> str:
        return f"OutputFolder({display(self.loc)!r})"
