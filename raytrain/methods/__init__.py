"""Methods plug into the one training loop through :class:`raytrain.methods.base.Method`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn

    from raytrain.config import RunConfig
    from raytrain.methods.base import Method


def method_class(name: str) -> type[Method]:
    """The Method class registered under ``name`` (:mod:`raytrain.methods.registry`; imported lazily: a run loads
    only its own method)."""
    from raytrain.methods.registry import method_class as registered

    return registered(name)


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
