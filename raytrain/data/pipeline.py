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

import numpy as np
import ray

from raytrain.config.sections import augment_name
from raytrain.data.collection import Collection, DomainImages, data_scale
from raytrain.data.degrade import NoiseModel, noise_model, rng_for
from raytrain.data.passes import Passes
from raytrain.data.resize import bicubic_down
from raytrain.data.stored import pixels
from raytrain.errors import DataError
from raytrain.layout import chw

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
        offset = ray.get(counter.get_pass.remote(name)) * n_patches if counter is not None else 0
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


PassCounter = ray.remote(num_cpus=0)(Passes)


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
