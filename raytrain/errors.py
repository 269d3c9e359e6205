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
