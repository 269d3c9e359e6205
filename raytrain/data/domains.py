"""Splitting one collection into disjoint domains, by image, deterministically from a seed.

- ``semi`` (SeNM-VAE): ``val`` held out; of the rest, a paired set (fraction or count), then the remainder split in
  halves: ``source`` (clean only) and ``target`` (noisy only).
- ``two_domain`` (LIR): ``val`` held out; the rest in disjoint halves, ``target`` made noisy, ``source`` kept clean.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from raytrain.errors import DataError


@dataclass
class Split:
    """Indices into the collection for each domain; pairwise disjoint."""

    val: list[int] = field(default_factory=list)
    paired: list[int] = field(default_factory=list)
    source: list[int] = field(default_factory=list)  # clean only
    target: list[int] = field(default_factory=list)  # noisy only

    def sizes(self) -> dict[str, int]:
        return {k: len(getattr(self, k)) for k in ("val", "paired", "source", "target")}

    @property
    def train(self) -> list[int]:
        """Every index outside validation, in order."""
        return sorted(self.paired + self.source + self.target)


def hold_out(n: int, val_images: int, seed: int, groups: list[str] | None = None, order: str = "seeded"
             ) -> tuple[list[int], list[int]]:  # fmt: skip
    """(validation indices, sorted; the rest in a seeded order). Depends only on n, val_images and seed, so every run of
    an ablation over paired fractions validates on the same images. With ``groups`` (a dataset's scene per image),
    whole groups are drawn in a seeded order until at least ``val_images`` images are held out, and the rest keeps
    each group together (so the paired set is whole scenes too). ``order="listed"``: the last ``val_images`` images
    are held out and the rest keeps the collection's order (no seed, no groups)."""
    if val_images >= n and n:
        raise DataError(f"collection has {n} images; data.val_images={val_images} leaves none to train on")
    if order == "listed":
        return list(range(n - val_images, n)), list(range(n - val_images))
    if groups is None:
        perm = np.random.default_rng([seed, 7919]).permutation(n).tolist()
        return sorted(perm[:val_images]), perm[val_images:]
    names = sorted(set(groups))
    members = {g: [i for i, gi in enumerate(groups) if gi == g] for g in names}
    val: list[int] = []
    rest: list[int] = []
    for k in np.random.default_rng([seed, 7919]).permutation(len(names)).tolist():
        (val if len(val) < val_images else rest).extend(members[names[k]])
    if not rest:
        raise DataError(
            f"{len(names)} scenes: data.val_images={val_images} takes every scene, none is left to train on"
        )
    return sorted(val), rest


def split_semi(
    n: int,
    val_images: int,
    seed: int,
    fraction: float | None = None,
    count: int | None = None,
    unit: str = "images",
    groups: list[str] | None = None,
    order: str = "seeded",
) -> Split:
    """Held-out val, a paired set of ``count`` images (or ``round(fraction * rest)``, at least 1), and the rest
    halved into clean-only source and noisy-only target."""
    val, rest = hold_out(n, val_images, seed, groups, order)
    if count is not None:
        if count > len(rest):
            raise DataError(
                f"data.paired.count={count} is larger than the {len(rest)} training {unit} "
                f"({n} in the collection, {val_images} held out for validation)"
            )
        k = count
    else:
        k = max(1, round((fraction if fraction is not None else 1.0) * len(rest)))
    remaining = rest[k:]
    half = len(remaining) // 2
    return Split(val, sorted(rest[:k]), remaining[:half], remaining[half:])  # unpaired: seeded order (make_split)


def split_two_domain(n: int, val_images: int, seed: int, groups: list[str] | None = None, order: str = "seeded"
                     ) -> Split:  # fmt: skip
    """LIR's setting: disjoint halves, one clean (source) and one noisy (target); no pairs."""
    val, rest = hold_out(n, val_images, seed, groups, order)
    if len(rest) < 2:
        raise DataError(f"collection has {n} images; two domains need at least 2 besides validation")
    half = len(rest) // 2
    return Split(val, [], rest[:half], rest[half:])  # seeded order: make_split caps and sorts


def make_split(n: int, data_cfg, seed: int, tiles: bool = False, groups: list[str] | None = None) -> Split:
    """Split from a validated ``DataConfig``; ``tiles``: ``n`` training tiles, validation already held out;
    ``groups``: the scene of each image (datasets), kept whole across validation and training. ``data.unpaired``
    caps the clean-only and noisy-only domains to their first images in the split's seeded order, so a smaller cap
    keeps a subset of a larger one's images (Table 7's 96 within its 960)."""
    v, order = (0 if tiles else data_cfg.val_images), data_cfg.split_order
    if data_cfg.split == "two_domain":
        split = split_two_domain(n, v, seed, groups, order)
    else:
        split = split_semi(n, v, seed, data_cfg.paired.fraction, data_cfg.paired.count, "tiles" if tiles else "images",
                           groups, order)  # fmt: skip
    unpaired = data_cfg.unpaired
    for domain, what in (("source", "clean-only"), ("target", "noisy-only")):
        order = getattr(split, domain)
        cap = unpaired.cap(domain)
        if cap is not None and cap > len(order):
            key = f"data.unpaired.{domain if getattr(unpaired, domain) is not None else 'count'}"
            unit = "tiles" if tiles else "images"
            raise DataError(f"{key}={cap} is larger than the {len(order)} {what} training {unit} the split leaves "
                            f"({n} in the collection)")  # fmt: skip
        setattr(split, domain, sorted(order if cap is None else order[:cap]))
    return split
