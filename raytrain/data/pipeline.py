"""Ray Data patch streams, one per domain, sharded to Train workers with ``ray.train.get_dataset_shard``.

Each domain's stream is ``ray.data.range(n)`` mapped to patches: patch ``id`` of pass ``k`` is cut from an image with
a generator seeded by ``(seed, domain, k * n + id)``, so the stream is reproducible whatever the number of workers or
blocks, and every pass cuts new patches. Images live once in the object store (``ray.put``) and the crop tasks read
them zero-copy.

Passes are short (:func:`pass_size`, at most ``PASS_BYTES``) and the workers start a new one when a pass runs out
(``train.draw.batch_stream``, which sets the pass number on the run's :class:`PassCounter` first). One long pass would
keep Ray Data's streaming executor alive and backpressured for the whole run, and Ray 2.60's scheduling loop spins
when it has no task in flight: each domain's split coordinator then burned ~half a core (LIR, 1 worker of 2 CPUs,
a run sized by ``train.max_minutes``: 6.5 s/step with one 2**20-patch pass, 1.05 s/step with 4096-patch passes).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

import numpy as np
import ray

from raytrain.config.sections import augment_name
from raytrain.data.datasets import dataset_kind, load_dataset
from raytrain.data.degrade import NoiseModel, noise_model, rng_for
from raytrain.data.domains import Split, hold_out, make_split
from raytrain.data.images import Image, check_min_size, load_collection, load_pairs
from raytrain.data.resize import bicubic_down, centre_crop_pair
from raytrain.data.stored import is_stored, lazy_crop, lazy_map, load, materialise, pixels, stored_bytes
from raytrain.errors import DataError
from raytrain.layout import Pair, chw
from raytrain.metrics import noise_correlation

DOMAIN_CODES = {"paired": 1, "source": 2, "target": 3}
PATCHES_PER_BLOCK = 1024
PASS_BYTES = 2**27  # one pass of a domain's stream holds at most this many bytes of patches (128 MiB; pass_size)
STREAM_ABOVE = 4 * 2**30  # data.stream auto: stream when the images would take more than this as float32
AUGMENT_SAMPLE = 16  # augment auto on streamed images: the lag-1 correlations of at most this many pairs


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
    in their files (validation is read)."""
    d = cfg.data
    images, noisy, groups = read_collection(cfg, lazy=d.stream is not False)
    check_min_size(images, d.patches.size * d.scale, d.source)
    clean = [im.pixels for im in images]
    lazy = streams(d, clean, noisy)
    if lazy:
        gb = stored_bytes([*clean, *noisy]) / 2**30
        print(f"[raytrain] data.stream: {len(clean)} images ({gb:.1f} GB as float32) are read from their files as "
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
    synth = load_pairs(f"{d.synthetic}/clean", f"{d.synthetic}/noisy", d.color, scale, lazy)
    check_min_size([c for c, _ in synth], d.patches.size * scale, f"{d.synthetic}/clean")
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


#: the dihedral transforms (:func:`dihedral` indices) each ``data.patches.augment`` draws from: ``flips`` keeps the
#: image axes (identity, 180 degrees, left-right and up-down flips), so row- or column-correlated noise stays so
AUGMENT_TRANSFORMS = {"dihedral": (0, 1, 2, 3, 4, 5, 6, 7), "flips": (0, 2, 4, 6), "none": (0,)}


ISOTROPY_GAP = 0.1  # augment: auto turns patches when |lag-1 corr. along rows - along columns| is at most this


def resolve_augment(augment: str, collection: Collection) -> tuple[str, str]:
    """``data.patches.augment`` as the run applies it, and why: ``auto`` -> ``dihedral`` when the real paired noise's
    lag-1 correlation along rows and along columns differ by at most :data:`ISOTROPY_GAP` (a 90-degree turn is then a
    symmetry of the noise), ``flips`` when they differ more (noise tied to the sensor's axes), ``dihedral`` without
    paired images; any other value as given."""
    if augment != "auto":
        return augment, ""
    paired = collection.domains.get("paired")
    if paired is None or paired.clean is None or paired.noisy is None or len(paired) == 0:
        return "dihedral", "no paired images with a fixed noisy one"
    real = list(range(len(paired) if paired.synthetic_from is None else paired.synthetic_from))
    if paired.patches_per_image > 1 and len(real) > AUGMENT_SAMPLE:  # streamed: read a spread of the pairs only
        real = [real[int(i)] for i in np.linspace(0, len(real) - 1, AUGMENT_SAMPLE)]
    # the real pairs only: synthetic ones (a downstream arm's) do not count
    rho = [noise_correlation(pixels(paired.noisy[i]).astype(np.float64) - bicubic_down(pixels(paired.clean[i]),
                                                                                        paired.scale))
           for i in real]  # fmt: skip
    h, v = float(np.mean([r["rho_h"] for r in rho])), float(np.mean([r["rho_v"] for r in rho]))
    pick = "dihedral" if abs(h - v) <= ISOTROPY_GAP else "flips"
    return pick, f"paired noise lag-1 correlation along rows {h:.2f}, along columns {v:.2f}"


def dihedral(img: np.ndarray, k: int) -> np.ndarray:
    """The k-th (0..7) of the 8 dihedral transforms of an (H, W, C) array: rotate by 90*(k%4), flip if k >= 4."""
    out = np.rot90(img, k % 4, axes=(0, 1))
    return out[:, ::-1] if k >= 4 else out


def pick_image(domain: DomainImages, rng: np.random.Generator) -> int:
    """The image a patch is cut from: uniform over the domain, or, with ``synthetic_fraction`` set, from the synthetic
    images with that probability and from the real ones otherwise."""
    f, k, n = domain.synthetic_fraction, domain.synthetic_from, len(domain)
    if f is None or k is None or not 0 < k < n:
        return int(rng.integers(n))
    return int(rng.integers(k, n)) if rng.random() < f else int(rng.integers(k))


def cut_patches(
    ids: np.ndarray,
    domain: DomainImages,
    size: int,
    augment: str | bool,
    seed: int,
    code: int,
    resample: NoiseModel | None = None,
) -> dict[str, np.ndarray]:
    """Patches for ``ids``: {"clean": (B, C, s, s), "noisy": (B, C, s, s)} (keys the domain has); with the domain's
    ``scale`` > 1 the clean (HR) patches are ``s * scale`` and cover their noisy (LR) patch exactly."""
    transforms = AUGMENT_TRANSFORMS[augment_name(augment)]
    keys = [k for k in ("clean", "noisy") if getattr(domain, k) is not None]
    if resample is not None and "noisy" not in keys:
        keys.append("noisy")
    out: dict[str, list] = {k: [None] * len(ids) for k in keys}
    sc, m = domain.scale, domain.patches_per_image
    if m > 1:  # images read from files: a visit's m patches come from its image; cut image by image (one read each)
        visits = [image_visit(int(pid), m) for pid in ids]
        images = [pick_image(domain, rng_for(seed, code + VISIT_KEY, v)) for v in visits]
        order = sorted(range(len(ids)), key=lambda r: (images[r], r))
    else:
        order = list(range(len(ids)))
    for row in order:
        pid = ids[row]
        rng = rng_for(seed, code, int(pid))
        j = images[row] if m > 1 else pick_image(domain, rng)
        ref = domain.clean[j] if domain.clean is not None else domain.noisy[j]
        h, w = ref.shape[:2]
        if domain.clean is not None:
            h, w = h // sc, w // sc  # the LR grid the patch's corner is drawn on
        top, left = int(rng.integers(h - size + 1)), int(rng.integers(w - size + 1))
        k = transforms[int(rng.integers(len(transforms)))] if len(transforms) > 1 else 0
        for key in keys:
            if key == "noisy" and resample is not None:
                src = resample(domain.clean[j][top : top + size, left : left + size], rng)
            elif key == "clean":
                src = domain.clean[j][top * sc : (top + size) * sc, left * sc : (left + size) * sc]
            else:
                src = domain.noisy[j][top : top + size, left : left + size]
            out[key][row] = chw(dihedral(src, k))
    return {k: np.stack(v).astype(np.float32) for k, v in out.items()}


VISIT_KEY = 100  # rng key offset of the image a visit reads (patch positions use the domain's code)


def image_visit(pid: int, m: int) -> int:
    """The visit (one image read) patch ``pid`` belongs to, ``m`` patches per visit: consecutive ids go round the
    ``PATCHES_PER_BLOCK // m`` visits of their group, so a training batch mixes images while one crop task of a
    group reads each of its images once."""
    per_group = max(1, PATCHES_PER_BLOCK // m)
    group, pos = divmod(pid, per_group * m)
    return group * per_group + pos % per_group


def patch_dataset(
    domain: DomainImages,
    n_patches: int,
    size: int,
    augment: str | bool,
    seed: int,
    name: str,
    resample: NoiseModel | None = None,
    blocks: int | None = None,
    counter: PassCounter | None = None,
) -> ray.data.Dataset:
    """A Ray Dataset of ``n_patches`` patches from one domain (lazy; executed while training streams it); with a
    :class:`PassCounter`, pass ``k`` cuts ids offset by ``k * n_patches``."""
    ref = ray.put(domain)
    code = DOMAIN_CODES[name]

    def to_patches(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        offset = ray.get(counter.get.remote(name)) * n_patches if counter is not None else 0
        return cut_patches(batch["id"] + offset, ray.get(ref), size, augment, seed, code, resample)

    # Small blocks (<= PATCHES_PER_BLOCK rows): a map task's output block stays a few MB however long the run is.
    ds = ray.data.range(n_patches, override_num_blocks=blocks or max(1, -(-n_patches // PATCHES_PER_BLOCK)))
    # a streamed domain's task cuts a whole block, so it reads each image of the block's visits once
    batch = PATCHES_PER_BLOCK if domain.patches_per_image > 1 else 128
    return ds.map_batches(to_patches, batch_size=batch, batch_format="numpy")


def patch_bytes(cfg) -> int:
    """Bytes of one patch in the stream: float32 clean (HR: ``scale`` x the side) and noisy."""
    channels = 3 if cfg.data.color == "rgb" else 1
    return channels * cfg.data.patches.size**2 * 4 * (1 + data_scale(cfg.data) ** 2)


def pass_size(cfg, num_workers: int) -> int:
    """Patches in one pass of a domain's stream: enough for the run (plus a batch per worker), at most
    ``PASS_BYTES`` of patches, at least 16 steps' worth."""
    per_step = cfg.train.batch_size * num_workers
    cap = max(PASS_BYTES // patch_bytes(cfg), 16 * per_step)
    return min(cfg.train.steps * per_step + per_step, cap)


@ray.remote(num_cpus=0)
class PassCounter:
    """The pass each of a run's domain streams is in: set by the workers before each pass, read by every crop task,
    so pass ``k`` cuts the ids ``k * n .. (k + 1) * n - 1`` (the workers draw the same domains every step, so they
    set the same ``k``)."""

    def __init__(self) -> None:
        self.k: dict[str, int] = {}

    def set(self, domain: str, k: int) -> None:
        self.k[domain] = k

    def get(self, domain: str) -> int:
        return self.k.get(domain, 0)


def build_datasets(
    cfg, collection: Collection, domains: tuple[str, ...], num_workers: int, counter: PassCounter | None = None
) -> dict:
    """One patch dataset per domain the method draws from, in passes of :func:`pass_size` patches (a
    :class:`PassCounter` makes each pass cut new patches; without one the passes repeat)."""
    d = cfg.data
    # Ray Data's per-operator bars would interleave with the training bar; the training bar says enough.
    ray.data.DataContext.get_current().enable_progress_bars = False
    resample = noise_model(d.noise) if (d.resample_noise and not d.noisy_source) else None
    n = pass_size(cfg, num_workers)
    augment, why = resolve_augment(d.patches.augment, collection)
    if why:
        print(f"[raytrain] data.patches.augment auto: {augment} ({why})", flush=True)
    out = {}
    for name in domains:
        dom = collection.domains[name]
        if len(dom) == 0:
            raise DataError(
                f"the {name} domain is empty (split sizes {collection.split.sizes()}); "
                f"check data.split, data.paired and data.val_images"
            )
        out[name] = patch_dataset(dom, n, d.patches.size, augment, cfg.seed, name,
                                  resample if name == "paired" else None, counter=counter)  # fmt: skip
    return out
