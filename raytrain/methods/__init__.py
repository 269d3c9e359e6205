"""Methods plug into the one training loop through :class:`raytrain.methods.base.Method`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from raytrain.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from raytrain.config import RunConfig
    from raytrain.methods.base import Method


def method_class(name: str) -> type[Method]:
    """The Method class registered under ``name`` (imported lazily: a run loads only its own method)."""
    if name in ("dncnn", "drunet"):
        from raytrain.methods.denoiser.method import SupervisedDenoiser

        return SupervisedDenoiser
    if name == "lir":
        from raytrain.methods.lir.method import LIR

        return LIR
    if name == "senm":
        from raytrain.methods.senm.method import SeNM

        return SeNM
    raise ConfigError(f"method.name: unknown method {name!r} (known: dncnn, drunet, lir, senm)")


def build_method(
    cfg: RunConfig,
    device: torch.device,
    prepare: Callable[[nn.Module], nn.Module] | None = None,
    inference: bool = False,
) -> Method:
    """Instantiate the method named by ``cfg.method.name`` on ``device``.

    ``inference=True`` builds only the nets (no optimisers), unwrapped, for ``denoise``/``eval``.
    """
    return method_class(cfg.method.name)(cfg, device, prepare, inference=inference)
