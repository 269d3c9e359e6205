"""Ray Data patch streams, one per domain, sharded to Train workers with ``ray.train.get_dataset_shard``.

Each domain's stream is ``ray.data.range(n)`` mapped to patches: patch ``id`` of pass ``k`` is cut from an image at
a position and transform drawn from ``(seed, domain, k * n + id)`` alone (counter-based draws), so the stream is
reproducible whatever the number of workers or blocks, and every pass cuts new patches. Images live once in the
object store (``ray.put``), 8-bit ones as uint8, and the crop tasks read them zero-copy; a block's patches are cut
with a few array operations and travel in the images' dtype. Noise resampled per patch is drawn on the worker's
device after the batch arrives (``train.draw.batch_stream``, data/device_noise.py).

Passes are short (:func:`pass_size`, at most ``PASS_BYTES``) and the workers start a new one when a pass runs out
(``train.draw.batch_stream``, which sets the pass number on the run's :class:`PassCounter` first). One long pass would
keep Ray Data's streaming executor alive and backpressured for the whole run, and Ray 2.60's scheduling loop spins
when it has no task in flight: each domain's split coordinator then burned ~half a core (LIR, 1 worker of 2 CPUs,
a run sized by ``train.max_minutes``: 6.5 s/step with one 2**20-patch pass, 1.05 s/step with 4096-patch passes).
"""

from __future__ import annotations

import numpy as np
import ray

from raytrain.config.sections import augment_name
from raytrain.data.collection import Collection, DomainImages, data_scale
from raytrain.data.degrade import NoiseModel, noise_model
from raytrain.data.passes import Passes
from raytrain.data.resize import bicubic_down
from raytrain.data.stored import is_stored, pixels, raw_pixels
from raytrain.errors import DataError

DOMAIN_CODES = {"paired": 1, "source": 2, "target": 3}
PATCHES_PER_BLOCK = 1024
PASS_BYTES = 2**27  # one pass of a domain's stream holds at most this many bytes of patches (128 MiB; pass_size)
AUGMENT_SAMPLE = 16  # augment auto on streamed images: the lag-1 correlations of at most this many pairs


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
    from raytrain.metrics import noise_correlation  # here: raytrain.metrics imports torch (see data/resize.py)

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


_GOLD = np.uint64(0x9E3779B97F4A7C15)  # SplitMix64's increment


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser, element-wise on uint64 (wrapping arithmetic)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def counter_uniforms(seed: int, code: int, ids: np.ndarray, fields: int) -> np.ndarray:
    """(fields, len(ids)) uniforms in [0, 1), each a function of (seed, code, id, field) only: counter-based draws
    (SplitMix64 of the key), so a patch id gives the same patch however the ids are split into blocks, tasks or
    workers, without a generator per patch."""
    with np.errstate(over="ignore"):
        base = _mix(_mix(np.uint64(seed) * _GOLD + np.uint64(1)) + np.uint64(code) * _GOLD)
        x = _mix(base + np.asarray(ids).astype(np.uint64) * _GOLD)
        out = np.empty((fields, len(x)))
        for f in range(fields):
            x = _mix(x + _GOLD)
            out[f] = (x >> np.uint64(11)) * (1.0 / 2**53)
    return out


def pick_images(domain: DomainImages, u_which: np.ndarray, u_index: np.ndarray) -> np.ndarray:
    """The image each patch is cut from, from two uniforms per patch: uniform over the domain, or, with
    ``synthetic_fraction`` set, from the synthetic images with that probability and from the real ones otherwise."""
    f, k, n = domain.synthetic_fraction, domain.synthetic_from, len(domain)
    if f is None or k is None or not 0 < k < n:
        return np.minimum((u_index * n).astype(np.int64), n - 1)
    synthetic = u_which < f
    return np.where(synthetic, k + np.minimum((u_index * (n - k)).astype(np.int64), n - k - 1),
                    np.minimum((u_index * k).astype(np.int64), k - 1))  # fmt: skip


def stream_dtype(images: list) -> np.dtype:
    """What a domain's patches travel as: uint8 when every image is 8-bit (4x fewer bytes than float32; the worker
    converts them on its device, ``train.draw.batch_stream``): an in-memory uint8 array, or an image read from a
    prepared store's 8-bit array (data/prepared.py); float32 otherwise."""
    u8 = np.dtype(np.uint8)
    ok = all(im.raw_dtype() == u8 if is_stored(im) else getattr(im, "dtype", None) == u8 for im in images)
    return u8 if ok else np.dtype(np.float32)


def compact8(images: list) -> list:
    """In-memory float images whose every pixel is an 8-bit level (k / 255: decoded 8-bit files, quantised noise) as
    uint8 (exact); the rest, and images read from their files, as they are."""
    from raytrain.data.images import levels8

    return [im if (u8 := levels8(im)) is None else u8 for im in images]


def compact_domain(domain: DomainImages) -> DomainImages:
    """The domain with :func:`compact8` images (what the object store holds for a stream)."""
    from dataclasses import replace

    return replace(domain, clean=None if domain.clean is None else compact8(domain.clean),
                   noisy=None if domain.noisy is None else compact8(domain.noisy))  # fmt: skip


def cut_patches(
    ids: np.ndarray,
    domain: DomainImages,
    size: int,
    augment: str | bool,
    seed: int,
    code: int,
) -> dict[str, np.ndarray]:
    """Patches for ``ids``: {"clean": (B, C, s, s), "noisy": (B, C, s, s)} (keys the domain has), uint8 when the
    domain's images are (:func:`stream_dtype`), else float32; with the domain's ``scale`` > 1 the clean (HR) patches
    are ``s * scale`` and cover their noisy (LR) patch exactly. Vectorised: the draws of every patch at once
    (:func:`counter_uniforms`), one gather per image (a sliding-window view indexed by the patches' corners) and one
    array operation per dihedral transform."""
    from numpy.lib.stride_tricks import sliding_window_view

    ids = np.asarray(ids, dtype=np.int64)
    transforms = np.asarray(AUGMENT_TRANSFORMS[augment_name(augment)])
    keys = [k for k in ("clean", "noisy") if getattr(domain, k) is not None]
    sc, m = domain.scale, domain.patches_per_image
    u = counter_uniforms(seed, code, ids, 5)
    if m > 1:  # images read from files: a visit's m patches come from its image (one read each)
        visits = np.array([image_visit(int(pid), m) for pid in ids], dtype=np.int64)
        v = counter_uniforms(seed, code + VISIT_KEY, visits, 2)
        which = pick_images(domain, v[0], v[1])
    else:
        which = pick_images(domain, u[0], u[1])
    ref = domain.clean if domain.clean is not None else domain.noisy
    hs = np.array([im.shape[0] for im in ref], dtype=np.int64)
    ws = np.array([im.shape[1] for im in ref], dtype=np.int64)
    if domain.clean is not None:
        hs, ws = hs // sc, ws // sc  # the LR grid the patch's corner is drawn on
    top = (u[2] * (hs[which] - size + 1)).astype(np.int64)
    left = (u[3] * (ws[which] - size + 1)).astype(np.int64)
    turn = transforms[np.minimum((u[4] * len(transforms)).astype(np.int64), len(transforms) - 1)]
    out = {}
    for key in keys:
        images = getattr(domain, key)
        f = sc if key == "clean" else 1
        side = size * f
        dtype = stream_dtype(images)
        got = np.empty((len(ids), ref[0].shape[2], side, side), dtype)
        for j in np.unique(which):
            rows = np.nonzero(which == j)[0]
            img = raw_pixels(images[j]) if dtype == np.uint8 else pixels(images[j])  # a prepared one: no decode
            windows = sliding_window_view(img, (side, side), axis=(0, 1))  # (H - s + 1, W - s + 1, C, s, s)
            part = windows[top[rows] * f, left[rows] * f]
            got[rows] = part if dtype == img.dtype else part.astype(np.float32) / np.float32(255.0)
        for t in np.unique(turn):
            if t:
                rows = np.nonzero(turn == t)[0]
                turned = np.rot90(got[rows], t % 4, axes=(2, 3))  # as dihedral(HWC, t) on each patch
                got[rows] = turned[..., ::-1] if t >= 4 else turned
        out[key] = got
    return out


VISIT_KEY = 100  # key offset of the image a visit reads (patch draws use the domain's code)


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
    blocks: int | None = None,
    counter: PassCounter | None = None,
) -> ray.data.Dataset:
    """A Ray Dataset of ``n_patches`` patches from one domain (lazy; executed while training streams it); with a
    :class:`PassCounter`, pass ``k`` cuts ids offset by ``k * n_patches``. The domain's 8-bit images travel as uint8
    (:func:`compact_domain`); noise resampled per patch is drawn on the worker's device (``train.draw``)."""
    ref = ray.put(compact_domain(domain))
    code = DOMAIN_CODES[name]

    def to_patches(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        offset = ray.get(counter.get_pass.remote(name)) * n_patches if counter is not None else 0
        return cut_patches(batch["id"] + offset, ray.get(ref), size, augment, seed, code)

    # Blocks of at most PATCHES_PER_BLOCK rows, each cut by one task in one call: a task's fixed cost (~25 ms) over
    # 1024 patches instead of 128 (8.8k -> 32k patches/s on 2 cores, 64 px RGB uint8), and a streamed domain's task
    # reads each image of its visits once; a block stays ~12 MB (64 px RGB uint8) however long the run is.
    ds = ray.data.range(n_patches, override_num_blocks=blocks or max(1, -(-n_patches // PATCHES_PER_BLOCK)))
    return ds.map_batches(to_patches, batch_size=PATCHES_PER_BLOCK, batch_format="numpy")


def patch_bytes(cfg, itemsize: int = 4) -> int:
    """Bytes of one patch in the stream at most: clean (HR: ``scale`` x the side) and noisy, ``itemsize`` bytes a
    pixel value (1: 8-bit images travel as uint8, :func:`stream_dtype`; 4: float32)."""
    channels = 3 if cfg.data.color == "rgb" else 1
    return channels * cfg.data.patches.size**2 * itemsize * (1 + data_scale(cfg.data) ** 2)


def pass_size(cfg, num_workers: int, itemsize: int = 4) -> int:
    """Patches in one pass of a domain's stream: enough for the run (plus a batch per worker), at most
    ``PASS_BYTES`` of patches of ``itemsize``-byte values, at least 16 steps' worth."""
    per_step = cfg.train.batch_size * num_workers
    cap = max(PASS_BYTES // patch_bytes(cfg, itemsize), 16 * per_step)
    return min(cfg.train.steps * per_step + per_step, cap)


def domain_itemsize(domain: DomainImages) -> int:
    """Bytes a pixel value of a domain's patches travels in (the largest of its images' :func:`stream_dtype`)."""
    return max(stream_dtype(imgs).itemsize for imgs in (domain.clean, domain.noisy) if imgs is not None)


PassCounter = ray.remote(num_cpus=0)(Passes)


def build_datasets(
    cfg, collection: Collection, domains: tuple[str, ...], num_workers: int, counter: PassCounter | None = None
) -> dict:
    """One patch dataset per domain the method draws from, in passes of :func:`pass_size` patches (a
    :class:`PassCounter` makes each pass cut new patches; without one the passes repeat)."""
    d = cfg.data
    # Ray Data's per-operator bars would interleave with the training bar; the training bar says enough.
    ray.data.DataContext.get_current().enable_progress_bars = False
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
        cut = compact_domain(stream_domain(cfg, name, dom))  # (patch_dataset's compact_domain: then a no-op)
        n = pass_size(cfg, num_workers, domain_itemsize(cut))  # uint8 patches: 4x more in a pass of PASS_BYTES
        out[name] = patch_dataset(cut, n, d.patches.size, augment, cfg.seed, name, counter=counter)
    return out


def stream_noise(cfg, name: str) -> NoiseModel | None:
    """The noise drawn afresh for every patch of domain ``name`` (``data.resample_noise``: the paired domain's noisy
    patches from its clean ones, when the data has no noisy files), on the worker's device (``train.draw``); None:
    the domain's patches are used as cut."""
    d = cfg.data
    return noise_model(d.noise) if name == "paired" and d.resample_noise and not d.noisy_source else None


def stream_domain(cfg, name: str, domain: DomainImages) -> DomainImages:
    """What domain ``name``'s stream cuts: its images, less the fixed noisy ones where the worker draws fresh noise
    on its device (:func:`stream_noise`): those patches would be cut, sent and thrown away."""
    from dataclasses import replace

    return replace(domain, noisy=None) if stream_noise(cfg, name) is not None else domain
