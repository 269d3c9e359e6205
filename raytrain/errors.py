"""User-facing errors: one line that names the file or key and what was expected."""

from __future__ import annotations


class RaytrainError(Exception):
    """An error caused by the user's input (a file, a config value, an address).

    The CLI prints ``str(err)`` on one line and exits non-zero; ``--debug`` shows the traceback.
    """


class ConfigError(RaytrainError):
    """A config file or override that does not validate."""


class DataError(RaytrainError):
    """An image, folder or pair that cannot be used."""


class TrainingDiverged(RaytrainError):
    """The loss was NaN/Inf for too many consecutive steps."""


def first_line(exc: BaseException, limit: int = 200, typed: bool = False) -> str:
    """The first line of ``str(exc)``, cut to ``limit`` characters, for one-line messages; the exception's class name
    when the message is empty (``str(exc).splitlines()[0]`` raises IndexError there). ``typed`` prefixes the class
    name (``OSError: ...``), for causes that are not raytrain's own errors."""
    lines = str(exc).strip().splitlines()
    name = exc.__class__.__name__
    if not lines:
        return name
    text = lines[0][:limit]
    return f"{name}: {text}" if typed else text
