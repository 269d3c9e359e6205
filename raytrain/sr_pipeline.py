"""The super-resolution side of ``raytrain pipeline`` (``data.scale`` > 1, SeNM-VAE Sec. 4.6, Tables 4-5): the LR view
the noise models learn and are scored on, the noise sources that degrade HR images as y = noise(B(x)), and the
LPIPS net of ``pipeline.lpips``."""

from __future__ import annotations

import numpy as np

from raytrain.data.collection import Collection, DomainImages, scale_down
from raytrain.data.resize import bicubic_down
from raytrain.methods.perceptual_options import seeded_perceptual


def lr_view(collection: Collection, scale: int) -> Collection:
    """An SR collection's LR view: every clean (HR) image bicubic-downscaled by ``scale`` (the B(x) of y = B(x) + n'),
    what the noise models are fitted on and scored against; the collection itself when ``scale`` is 1."""
    if scale == 1:
        return collection

    def down(images):
        return None if images is None else [scale_down(c, scale) for c in images]

    domains = {k: DomainImages(down(d.clean), d.noisy, d.synthetic_from, d.synthetic_fraction,
                               patches_per_image=d.patches_per_image)
               for k, d in collection.domains.items()}  # fmt: skip
    val = [type(p)(bicubic_down(p.clean, scale), p.noisy) for p in collection.val]
    return Collection(domains, val, collection.val_names, collection.split)


class Downscaled:
    """A noise source for super-resolution pairs: HR x -> ``source``(B(x)) at 1/``scale`` of the size (SeNM-VAE's
    synthetic LR images); without a source, B(x) itself (the bicubic-only arm)."""

    def __init__(self, source, scale: int):
        self.source, self.scale = source, scale

    def describe(self) -> dict:
        inner = self.source.describe() if self.source is not None else {"kind": "none"}
        return {**inner, "downscale": f"bicubic x{self.scale}"}

    def __call__(self, clean: np.ndarray, index: int) -> np.ndarray:
        low = bicubic_down(clean, self.scale)
        return low if self.source is None else self.source(low, index)


def sr_sources(sources: dict[str, object], scale: int, arms) -> dict[str, object]:
    """Each arm's noise source for ``scale`` > 1: applied to the bicubic-downscaled HR image; plus the bicubic arm."""
    if scale == 1:
        return sources
    out: dict[str, object] = {arm: Downscaled(src, scale) for arm, src in sources.items()}
    if "bicubic" in arms:
        out["bicubic"] = Downscaled(None, scale)
    return out


def build_lpips(spec):
    """The LPIPS net of ``pipeline.lpips`` (None when unset): torchvision AlexNet + LPIPS v0.1 lin layers from local
    files, or ``backbone: random`` (tests: an untrained AlexNet with equal lin weights, numbers without meaning)."""
    if spec is None:
        return None
    random = spec.backbone == "random"
    return seeded_perceptual("lpips", None if random else spec.backbone, spec.lin, random, 0,
                             ("pipeline.lpips.backbone", "pipeline.lpips.lin")).eval()  # fmt: skip
