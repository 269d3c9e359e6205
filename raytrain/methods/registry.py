"""The methods raytrain knows: the table below names their packages; each package's ``__init__`` exports ``SPECS``,
one :class:`MethodSpec` per method it holds (its config class, its Method's dotted path, its train defaults, its
ablation variants, its official recipe). The config schema, :func:`raytrain.methods.method_class`, the search
spaces and the reference all read it. Adding a method = one new folder + one line in :data:`PACKAGES` (or, for a
package outside this repository, its name in ``RAYTRAIN_METHODS``).

No torch import here: a package's ``__init__`` imports only its config (pydantic); the Method class, and with it
torch and the nets, is imported when a run builds it.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from typing import Any

from raytrain.errors import ConfigError, first_line

#: the method packages, in the order the configuration reference lists them
PACKAGES = ("raytrain.methods.denoiser", "raytrain.methods.lir", "raytrain.methods.senm", "raytrain.methods.sr")
#: more method packages, comma-separated (importable modules exporting ``SPECS``): methods kept outside raytrain.
#: Set it where the runs start (the driver's environment; Ray workers started by the embedded Ray inherit it)
PLUGINS_ENV = "RAYTRAIN_METHODS"


@dataclass(frozen=True)
class MethodSpec:
    """What raytrain needs to know of one method."""

    config: type  # its ``method:`` section, a pydantic model whose ``name: Literal["<name>"]`` is the tag
    method: str  # "module:Class" of its :class:`~raytrain.methods.base.Method`, imported on first use
    train_defaults: dict[str, Any] = field(default_factory=dict)  # the train keys a run does not set (lr, schedule)
    variants: dict[str, tuple[str, ...]] = field(default_factory=lambda: {"full": ()})  # ablations as overrides
    official: dict[str, Any] | None = None  # what ``recipe: official`` in a job spec is checked against


_SPECS: dict[str, MethodSpec] | None = None


def packages() -> tuple[str, ...]:
    extra = tuple(p.strip() for p in os.environ.get(PLUGINS_ENV, "").split(",") if p.strip())
    return PACKAGES + tuple(p for p in extra if p not in PACKAGES)


def specs() -> dict[str, MethodSpec]:
    """Every registered method by name (read once per process)."""
    global _SPECS
    if _SPECS is None:
        found: dict[str, MethodSpec] = {}
        for pkg in packages():
            try:
                module = importlib.import_module(pkg)
            except ImportError as exc:
                raise ConfigError(
                    f"{PLUGINS_ENV}: cannot import the method package {pkg!r}: {first_line(exc)}"
                ) from None
            table = getattr(module, "SPECS", None)
            if not isinstance(table, dict) or not all(isinstance(s, MethodSpec) for s in table.values()):
                raise ConfigError(f"{pkg}: a method package exports SPECS, a dict of name -> MethodSpec")
            for name, spec in table.items():
                if name in found:
                    raise ConfigError(f"{pkg}: method {name!r} is registered twice")
                found[name] = spec
        _SPECS = found
    return _SPECS


def method_class(name: str) -> type:
    """The Method class of ``name``, imported now (a run loads only its own method's code)."""
    spec = specs().get(name)
    if spec is None:
        raise ConfigError(f"method.name: unknown method {name!r} (known: {', '.join(specs())})")
    module, _, cls = spec.method.partition(":")
    return getattr(importlib.import_module(module), cls)
