"""A run's images as its domains: read the collection ``data`` names (files, a paper dataset, real pairs), give the
clean images their fixed seeded noisy realisations, split them into the paired / source / target domains and the
held-out validation pairs, tile them, add synthetic pairs. With ``data.stream`` the training images stay in their files
(:mod:`raytrain.data.stored`) and the crop tasks read them. The patch streams cut from these domains are
:mod:`raytrain.data.pipeline`'s."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

import numpy as np

from raytrain import locations
from raytrain.data.datasets import dataset_kind, load_dataset
from raytrain.data.degrade import NoiseModel, noise_model, rng_for
from raytrain.data.domains import Split, hold_out, make_split
from raytrain.data.images import Image, check_min_size, load_collection, load_pairs
from raytrain.data.resize import bicubic_down, centre_crop_pair
from raytrain.data.stored import is_stored, lazy_crop, lazy_map, load, materialise, stored_bytes
from raytrain.errors import DataError
from raytrain.layout import Pair

STREAM_ABOVE = 4 * 2**30  # data.stream auto: stream when the images would take more than this as float32


@dataclass
class DomainImages:
    """Images of one domain: ``clean`` and/or ``noisy`` lists (same order), float32 (H, W, C); with ``scale`` > 1 the
    clean images are HR, ``scale`` times the noisy (LR) ones' size."""

    clean: list[np.ndarray] | None = None
    noisy: list[np.ndarray] | None = None
    # images from this index on are synthetic pairs; ``synthetic_fraction`` of the patches come from them
    synthetic_from: int | None = None
    synthetic_fraction: float | None = None
    scale: int = 1
    # images read from their files (data.stream): each read serves this many patches (1: one image per patch)
    patches_per_image: int = 1

    def __len__(self) -> int:
        return len(self.clean if self.clean is not None else self.noisy or [])


@dataclass
class Collection:
    """A loaded collection split into domains, plus the validation pairs (clean, noisy), HWC."""

    domains: dict[str, DomainImages]
    val: list[Pair]
    val_names: list[str]
    split: Split


def centre_crop(img: np.ndarray, size: int | None) -> np.ndarray:
    if size is None:
        return img
    h, w = img.shape[:2]
    s_h, s_w = min(size, h), min(size, w)
    top, left = (h - s_h) // 2, (w - s_w) // 2
    return img[top : top + s_h, left : left + s_w]


def read_collection(cfg, lazy: bool = False) -> tuple[list, list, list | None]:
    """The images ``cfg.data`` names (``Image`` objects), their noisy counterparts (real, or a fixed seeded
    realisation of the noise model per image) and, for a paper dataset, each image's scene (None otherwise). With
    ``data.scale`` > 1 the images are HR and the noisy ones LR: real (sr:PATH, ``noisy_source``) or the noise model
    applied to the bicubic-downscaled image (SeNM-VAE's y = B(x) + n). ``lazy``: files stay unread
    (:class:`~raytrain.data.stored.StoredImage`, every step applied when the pixels are used)."""
    d = cfg.data
    if dataset_kind(d.source):  # a paper dataset as distributed (SIDD, ...): real pairs with their scenes
        pairs, groups = load_dataset(d.source, d.color, d.hu_window, d.hu_offset, d.scale, lazy)
        return [c for c, _ in pairs], [n.pixels for _, n in pairs], groups
    if d.noisy_source:  # real pairs: noise comes from the camera, not from a model
        pairs = load_pairs(d.source, d.noisy_source, d.color, d.scale, lazy)
        return [c for c, _ in pairs], [n.pixels for _, n in pairs], None
    images = load_collection(d.source, d.color, d.max_size, lazy)
    if d.scale > 1:
        images = [Image(im.name, scale_crop(im.pixels, d.scale)) for im in images]
    model, noise_key = noise_model(d.noise), json.dumps(d.noise.model_dump(), sort_keys=True, default=str)
    seed = split_seed(cfg)
    noisy = []
    for i, im in enumerate(images):
        h, w, c = im.pixels.shape
        step = functools.partial(degrade_one, model=model, scale=d.scale, seed=seed, index=i)
        noisy.append(lazy_map(im.pixels, step, (h // d.scale, w // d.scale, c), ("noise", noise_key, seed, i)))
    return images, noisy, None


def degrade_one(clean: np.ndarray, model: NoiseModel, scale: int, seed: int, index: int) -> np.ndarray:
    """Image ``index``'s fixed noisy realisation: the noise model on the bicubic-downscaled image."""
    return model(bicubic_down(clean, scale), rng_for(seed, 0, index))


def scale_crop(img, scale: int):
    """:func:`~raytrain.data.resize.mod_crop` of an image, stored or not."""
    h, w = img.shape[:2]
    return lazy_crop(img, 0, 0, h - h % scale, w - w % scale)


def scale_down(img, scale: int):
    """:func:`~raytrain.data.resize.bicubic_down` of an image, stored or not."""
    if scale == 1:
        return img
    h, w, c = img.shape
    return lazy_map(img, functools.partial(bicubic_down, scale=scale), (h // scale, w // scale, c), ("down", scale))


def split_seed(cfg) -> int:
    """The seed of the data's split and fixed noise realisations: ``data.split_seed``, else the run's seed."""
    return cfg.seed if cfg.data.split_seed is None else cfg.data.split_seed


def streams(d, images: list, noisy: list) -> bool:
    """Whether the run keeps its images in their files (``data.stream``); on ``auto``, when they would take more
    than :data:`STREAM_ABOVE` bytes as float32."""
    stored = any(is_stored(x) for x in (*images, *noisy))
    if d.stream is False or not stored:
        return False
    return d.stream is True or stored_bytes([*images, *noisy]) > STREAM_ABOVE


def load_domains(cfg) -> Collection:
    """Read the collection named by ``cfg.data``, degrade it (fixed, seeded realisation per image), split it.
    Validation and training never share a scene of a paper dataset. With ``data.stream`` the training images stay
    in their files (validation is read); with ``data.prepared`` the files a prepared store holds are read from its
    arrays (data/prepared.py)."""
    from raytrain.data.prepared import using

    with using(cfg.data.prepared):
        return _load_domains(cfg)


def _load_domains(cfg) -> Collection:
    d = cfg.data
    images, noisy, groups = read_collection(cfg, lazy=d.stream is not False)
    check_min_size(images, d.patches.size * d.scale, d.source)
    clean = [im.pixels for im in images]
    lazy = streams(d, clean, noisy)
    if lazy:
        gb = stored_bytes([*clean, *noisy]) / 2**30
        where = f"the prepared store {d.prepared}" if d.prepared else "their files"
        print(f"[raytrain] data.stream: {len(clean)} images ({gb:.1f} GB as float32) are read from {where} as "
              f"their patches are cut, {d.stream_patches} patches per read", flush=True)  # fmt: skip
    else:
        clean, noisy = materialise(clean, noisy)
    seed = split_seed(cfg)
    scale = data_scale(d)
    if scale != d.scale:  # downscale_clean: the noise model's pairs (B(HR), LR)
        clean = [scale_down(c, d.scale) for c in clean]
    if d.tiles:  # the training images become tiles, and the domains are split by tile (validation stays whole)
        val_idx, rest = hold_out(len(images), d.val_images, seed, groups, d.split_order)
        val = [(clean[i], noisy[i]) for i in val_idx]
        keep = sorted(rest)
        clean, noisy = tile_images([clean[i] for i in keep], [noisy[i] for i in keep], d.tiles, scale)
        split = make_split(len(clean), d, seed, tiles=True)
        split.val = val_idx  # the held-out images (indices into the collection, not into the tiles)
    else:
        split = make_split(len(images), d, seed, groups=groups)
        val = [(clean[i], noisy[i]) for i in split.val]
    val = [Pair(*centre_crop_pair(load(c), load(n), d.val_crop, scale)) for c, n in val]
    per_read = d.stream_patches if lazy else 1
    paired = DomainImages([clean[i] for i in split.paired], [noisy[i] for i in split.paired], scale=scale,
                          patches_per_image=per_read)  # fmt: skip
    extra_clean, extra_noisy = unpaired_folders(d, lazy)
    domains = {
        "paired": with_synthetic(paired, d, lazy),
        "source": DomainImages(
            clean=[clean[i] for i in split.source] + extra_clean, scale=scale, patches_per_image=per_read
        ),  # fmt: skip
        "target": DomainImages(
            noisy=[noisy[i] for i in split.target] + extra_noisy, scale=scale, patches_per_image=per_read
        ),  # fmt: skip
    }
    return Collection(domains, val, [images[i].name for i in split.val], split)


def unpaired_folders(d, lazy: bool = False) -> tuple[list, list]:
    """The images of ``data.clean_only`` and ``data.noisy_only`` (empty lists when unset), as the run uses them: clean
    ones cropped to a multiple of the scale and bicubic-downscaled with ``downscale_clean``, both tiled with
    ``data.tiles``; ``lazy``: left in their files."""
    out: list[list] = [[], []]
    for k, folder in enumerate((d.clean_only, d.noisy_only)):
        if not folder:
            continue
        images = load_collection(folder, d.color, lazy=lazy)
        s = d.scale if k == 0 else 1
        check_min_size(images, d.patches.size * s, folder)
        imgs = [scale_crop(im.pixels, d.scale) for im in images] if k == 0 else [im.pixels for im in images]
        if k == 0 and d.downscale_clean:
            imgs, s = [scale_down(c, d.scale) for c in imgs], 1
        if d.tiles:
            imgs = tile_single(imgs, d.tiles * s)
        out[k] = imgs
    return out[0], out[1]


def tile_single(images: list, size: int) -> list:
    """Non-overlapping ``size`` x ``size`` tiles of every image, in image then raster order."""
    h_w = [(im, range(0, im.shape[0] - size + 1, size), range(0, im.shape[1] - size + 1, size)) for im in images]
    return [lazy_crop(im, t, u, size, size) for im, tops, lefts in h_w for t in tops for u in lefts]


def data_scale(d) -> int:
    """The scale between a run's clean and noisy images: ``data.scale``, or 1 when ``downscale_clean`` brings the
    clean images to the LR size."""
    return 1 if d.downscale_clean else d.scale


def with_synthetic(paired: DomainImages, d, lazy: bool = False) -> DomainImages:
    """The real pairs, plus the synthetic pairs of ``data.synthetic`` (e.g. from a noise model) when it is set."""
    if not d.synthetic:
        return paired
    scale = data_scale(d)
    clean_dir, noisy_dir = locations.join(d.synthetic, "clean"), locations.join(d.synthetic, "noisy")
    synth = load_pairs(clean_dir, noisy_dir, d.color, scale, lazy)
    check_min_size([c for c, _ in synth], d.patches.size * scale, locations.display(clean_dir))
    return DomainImages(paired.clean + [c.pixels for c, _ in synth], paired.noisy + [n.pixels for _, n in synth],
                        len(paired.clean), d.synthetic_fraction, scale, paired.patches_per_image)  # fmt: skip


def tile_images(clean: list[np.ndarray], noisy: list[np.ndarray], size: int, scale: int = 1) -> tuple[list, list]:
    """Non-overlapping ``size`` x ``size`` tiles of every (clean, noisy) image, in image then raster order (the
    paper's setting: paired *samples* are crops, e.g. 10 of SIDD's 96,000 patches); with ``scale`` > 1 the noisy
    (LR) tiles are ``size`` and the clean (HR) ones the ``size * scale`` tiles they cover."""
    out_c, out_n, s = [], [], scale
    for c, n in zip(clean, noisy, strict=True):
        h, w = n.shape[:2]
        for top in range(0, h - size + 1, size):
            for left in range(0, w - size + 1, size):
                out_c.append(lazy_crop(c, top * s, left * s, size * s, size * s))
                out_n.append(lazy_crop(n, top, left, size, size))
    if not out_c:
        raise DataError(f"data.tiles={size}: every training image is smaller than one tile")
    return out_c, out_n
