"""What the ranks of a multi-worker run agree on without DDP's hooks: whether a loss is finite everywhere, and
gradient / tensor means in one flat all-reduce; and the bare module under a DDP wrapper. No-ops on one process."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


def all_finite(loss: torch.Tensor) -> bool:
    """Whether the loss is finite on every rank. Under DDP all ranks must take the same branch (skip or backward),
    or the gradient all-reduce of the ranks that went on would wait forever."""
    ok = torch.isfinite(loss.detach()).all().to(torch.float32).reshape(1)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(ok, op=dist.ReduceOp.MIN)
    return bool(ok.item())


def average_in_place(tensors: list[torch.Tensor], dtype: torch.dtype | None = None) -> None:
    """Replace each tensor by its mean over the ranks, all in one flat all-reduce (in ``dtype`` if given); no-op on a
    single process."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1 or not tensors:
        return
    flat = torch.cat([t.reshape(-1).to(dtype or t.dtype) for t in tensors])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for t in tensors:
        t.copy_(flat[offset : offset + t.numel()].view_as(t))
        offset += t.numel()


def average_gradients(params: list[nn.Parameter]) -> None:
    """All-reduce (mean) the gradients of ``params`` over ranks in one flat buffer; no-op on a single process."""
    average_in_place([p.grad for p in params])


def unwrap(module: nn.Module) -> nn.Module:
    """The bare module under a DDP wrapper (``prepare_model``), for state dicts and inference."""
    return (
        module.module
        if hasattr(module, "module") and isinstance(module, nn.parallel.DistributedDataParallel)
        else module
    )
