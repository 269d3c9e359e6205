"""What one training step draws: each domain's endless batch stream from this worker's Ray Data shard
(:func:`batch_stream`), handed out in any number of patches (:class:`PatchBuffer`), per step as the method asks
(:func:`draw_batches`, :func:`pick_domains`)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
import ray
import torch

from raytrain.config import RunConfig
from raytrain.data.device_noise import add_noise, generator
from raytrain.data.pipeline import DOMAIN_CODES, stream_noise
from raytrain.methods.base import Method, mix_probabilities


def batch_stream(
    shard, name: str, cfg: RunConfig, device: torch.device, counter: ray.actor.ActorHandle | None = None, rank: int = 0
) -> Iterator[dict[str, torch.Tensor]]:
    """Endless batches from this worker's ``shard`` of one domain (a Ray Data iterator): a new pass when the shard is
    exhausted, its number set on the run's ``PassCounter`` first, so that the crop tasks cut new patches
    (data/pipeline.py). The local shuffle is seeded per run, rank and pass. Each batch is made ready on the device
    (:func:`on_device`): 8-bit patches to float, the noise resampled per patch drawn there."""
    noise = stream_noise(cfg, name)
    for k in itertools.count():
        if counter is not None:
            ray.get(counter.set_pass.remote(name, k))
        gen = generator(device, cfg.seed, rank, DOMAIN_CODES[name], k) if noise is not None else None
        got = False
        for batch in shard.iter_torch_batches(
            batch_size=cfg.train.batch_size,
            local_shuffle_buffer_size=cfg.data.patches.shuffle_buffer or None,
            local_shuffle_seed=(cfg.seed * 1009 + rank) * 7919 + k if cfg.data.patches.shuffle_buffer else None,
            drop_last=True,
            device=device,
        ):
            got = True
            yield on_device(batch, noise, gen, cfg.train.channels_last)
        if not got:
            raise RuntimeError(f"the {name} patch stream is empty on this worker")


def on_device(batch: dict[str, torch.Tensor], noise=None, gen: torch.Generator | None = None,
              channels_last: bool = False) -> dict[str, torch.Tensor]:  # fmt: skip
    """A batch as the method takes it: uint8 patches as float32 in [0, 1] (converted on the device they arrived on),
    ``noise`` (a NoiseModel) drawn from ``gen`` as the ``noisy`` patches of the clean ones, channels-last if asked."""
    out = {k: v.float().div_(255.0) if v.dtype == torch.uint8 else v for k, v in batch.items()}  # exact k/255
    if noise is not None:
        out["noisy"] = add_noise(noise, out["clean"], gen)
    if channels_last:
        out = {k: v.contiguous(memory_format=torch.channels_last) for k, v in out.items()}
    return out


class PatchBuffer:
    """One domain's batch stream handed out in any number of patches: the rows of a batch a step does not use wait
    for the next draw, so a method that mixes domains per sample uses every patch Ray Data cuts. Counts what it pulled
    from the stream and what it handed out."""

    def __init__(self, stream: Iterator[dict[str, torch.Tensor]]):
        self.stream, self.rest = stream, None
        self.pulled = self.used = 0

    def take(self, n: int) -> dict[str, torch.Tensor]:
        parts = [] if self.rest is None else [self.rest]
        have = 0 if self.rest is None else len(next(iter(self.rest.values())))
        while have < n:
            batch = next(self.stream)
            rows = len(next(iter(batch.values())))
            parts.append(batch)
            have += rows
            self.pulled += rows
        joined = parts[0] if len(parts) == 1 else {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        self.rest = {k: v[n:] for k, v in joined.items()} if have > n else None
        self.used += n
        return {k: v[:n] for k, v in joined.items()} if have > n else joined


def draw_batches(method: Method, cfg: RunConfig, buffers: dict[str, PatchBuffer], step: int) -> dict:
    """This step's patches: :meth:`Method.draw_counts` of each domain, or whole batches of :func:`pick_domains`."""
    counts = method.draw_counts(step)
    if counts is None:
        counts = dict.fromkeys(pick_domains(method, cfg, step), cfg.train.batch_size)
    return {d: buffers[d].take(c) for d, c in counts.items() if c}


def pick_domains(method: Method, cfg: RunConfig, step: int) -> tuple[str, ...]:
    """The domains to draw this step. Methods that mix domains draw one, with the same choice on every rank
    (DDP needs every rank to touch the same parameters)."""
    if method.draw == "all":
        return method.domains
    p = mix_probabilities(cfg.data.mix, method.domains)
    rng = np.random.default_rng([cfg.seed, 4242, step])
    return (method.domains[int(rng.choice(len(p), p=p))],)
