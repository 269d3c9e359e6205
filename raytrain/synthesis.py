"""Synthetic pairs: a noise model applied to clean images, written as a paired folder that ``data.synthetic`` reads.

A noise source is a SeNM-VAE checkpoint (:class:`VAESource`) or a noise model fitted on the real pairs
(:class:`FittedSource`: the Gaussian and heteroscedastic baselines). The output folder holds ``clean/NAME.png`` and
``noisy/NAME.png`` (8-bit, the same names) and ``manifest.json`` (what made it), at a local folder or a URI; never
half a set (:class:`PairSet`); an existing non-empty folder is refused. Large sets run as a Ray Data job (one
actor per worker, each loading the model once): see :func:`write_pairs_ray`. Nothing at import time touches Ray.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch

from raytrain import locations
from raytrain.data.degrade import NoiseModel, rng_for
from raytrain.data.images import stem, to_uint
from raytrain.data.stored import load
from raytrain.errors import DataError, RaytrainError
from raytrain.files import write_error
from raytrain.inference import load_noise_model
from raytrain.layout import to_image, to_tensor
from raytrain.train.checkpoint import find_inference_file

Source = Callable[[np.ndarray, int], np.ndarray]  # (clean (H, W, C) in [0, 1], image index) -> noisy (H, W, C)


class VAESource:
    """Noisy images from a SeNM-VAE (see :meth:`raytrain.methods.senm.method.SeNM.synthesize` for the modes).

    ``level`` (0..255 scale) fixes the noise level; ``None`` draws each image's level from the model's level prior.
    A level outside the trained range is refused: the model never saw such noise. ``mode``, ``content`` and
    ``normalize`` default to the model's ``method.synthesis``, ``method.content``, ``method.normalize``. Full synthesis
    from a model whose content floor (measured at its last validation) is over ``method.max_content_floor`` times the
    real noise std is refused unless ``allow_content_floor``: the decoder's content error would be the "noise".
    """

    def __init__(self, checkpoint: str | Path, level: float | None = None, temperature: float | str | None = None,
                 seed: int = 0,
                 device: str | torch.device = "cpu", mode: str | None = None, content: str | None = None,
                 normalize: bool | None = None, allow_content_floor: bool = False,
                 overrides: list[str] | None = None):  # fmt: skip
        from raytrain.inference import resolve_device

        # how to build it again elsewhere (the pipeline's evaluation as a Ray task on a GPU node)
        self.args = (str(checkpoint), level, temperature, seed)
        self.kwargs = {"mode": mode, "content": content, "normalize": normalize,
                       "allow_content_floor": allow_content_floor, "overrides": overrides}  # fmt: skip
        self.device = resolve_device(device)
        self.cfg, self.method = load_noise_model(checkpoint, self.device, overrides)
        m = self.cfg.method
        self.seed = seed
        self.temperature = synthesis_temperature(self.method, temperature)
        self.mode, self.content = mode or m.synthesis, content or m.content
        self.normalize = m.normalize if normalize is None else normalize
        self.level = None
        if level is not None:
            if not self.cfg.method.level_conditioning:
                raise RaytrainError(f"{checkpoint}: this model is not level-conditioned; drop --level")
            lo, hi = (v * 255 for v in self.method.nets["levels"].range())
            if not (math.isfinite(level) and level > 0 and lo - 0.5 <= level <= hi + 0.5):
                raise RaytrainError(f"--level {level:g} is outside the trained range {lo:.1f}..{hi:.1f} "
                                    "(std of the noise, 0..255 scale); the model never saw such noise")  # fmt: skip
            self.level = level / 255.0
        self.floor = content_floor(self.method.trained_metrics)
        if self.mode == "full" and self.floor is not None and not allow_content_floor:
            floor, real = self.floor
            if floor > m.max_content_floor * real:
                raise RaytrainError(
                    f"{checkpoint}: content floor {floor:.2f} is {floor / real:.2f} x the real noise std {real:.2f} "
                    f"(limit method.max_content_floor={m.max_content_floor:g}): full synthesis would put the decoder's "
                    "content error into the noise; synthesise in residual mode, train longer, or allow it explicitly"
                )

    @property
    def color(self) -> str:
        return self.cfg.data.color

    def describe(self) -> dict:
        lo, hi = (round(v * 255, 2) for v in self.method.nets["levels"].range())
        floor = None if self.floor is None else [round(v, 3) for v in self.floor]
        return {"kind": "senm", "mode": self.mode, "content": self.content, "normalize": self.normalize,
                "level": "prior" if self.level is None else round(self.level * 255, 3),
                "trained_level_range": [lo, hi], "temperature": self.temperature, "seed": self.seed,
                "content_floor_vs_real_std": floor}  # fmt: skip

    @torch.no_grad()
    def synthesize(self, clean: torch.Tensor, level: torch.Tensor | None) -> torch.Tensor:
        """(N, C, H, W) clean -> noisy with this source's settings; ``level`` None: the fixed level or the prior. Runs
        on the source's device; the result comes back to ``clean``'s."""
        x = clean.to(self.device)
        if level is None and self.level is not None:
            level = torch.full((clean.shape[0], 1, 1, 1), self.level, device=self.device)
        level = None if level is None else level.to(self.device)
        out = self.method.synthesize(x, level, self.temperature, self.mode, self.content, self.normalize)
        return out.to(clean.device)

    @torch.no_grad()
    def __call__(self, clean: np.ndarray, index: int) -> np.ndarray:
        torch.manual_seed(self.seed * 1_000_003 + index)  # per image: the same image gets the same noise in any order
        return to_image(self.synthesize(to_tensor(clean, self.device), None))


def synthesis_temperature(method, temperature: float | str | None) -> float:
    """The number a temperature request means: None -> the model's ``method.temperature``; ``auto`` -> the one
    calibrated on its training pairs; else a finite number >= 0."""
    if temperature is None or temperature == "auto":
        return float(method.nets["levels"].temperature) if temperature == "auto" else method.temperature
    try:
        t = float(temperature)
    except (TypeError, ValueError):
        t = float("nan")
    if not (math.isfinite(t) and t >= 0):
        raise RaytrainError(
            f"--temperature must be a finite number >= 0 or auto (got {temperature}); 0 = the prior means"
        )
    return t


def content_floor(metrics: dict) -> tuple[float, float] | None:
    """(content floor, real noise std), 0..255, from a noise model's last validation; None when not measured."""
    floor, real = metrics.get("val_content_floor"), metrics.get("val_noise_std_real")
    return None if floor is None or not real else (float(floor), float(real))


class FittedSource:
    """A closed-form noise model (e.g. :func:`raytrain.data.degrade.fit_gaussian`), seeded per image."""

    def __init__(self, model: NoiseModel, seed: int = 0):
        self.model, self.seed = model, seed

    def describe(self) -> dict:
        return {"kind": self.model.kind, **self.model.params, "seed": self.seed}

    def __call__(self, clean: np.ndarray, index: int) -> np.ndarray:
        return self.model(clean, rng_for(self.seed, 7, index))


def png_bytes(img: np.ndarray, bits: int = 8) -> bytes:
    """A [0, 1] float image as an 8- or 16-bit PNG."""
    import imageio.v3 as iio

    return iio.imwrite("<bytes>", to_uint(img, bits), extension=".png")


class PairSet:
    """A synthetic pair set being written: ``OUT/clean/NAME.png``, ``OUT/noisy/NAME.png``, ``OUT/manifest.json``,
    with ``OUT`` a local folder or a URI. Never half a set, and an existing non-empty ``OUT`` is refused: a local set
    is written to a hidden folder beside ``OUT`` and renamed when complete; at a URI (object stores cannot rename a
    folder) the files go straight into ``OUT`` and ``manifest.json``, the mark of a complete set, is written last,
    once every file is counted there. :meth:`abort` removes what was written. Writers in other processes (the Ray
    Data actors of :func:`write_pairs_ray`) write to :attr:`root` with :func:`write_pair`."""

    def __init__(self, out: str | Path):
        self.out = locations.absolute(out)
        if locations.exists(self.out) and (not locations.is_dir(self.out) or locations.list_dir(self.out)):
            raise DataError(f"{locations.display(self.out)}: exists and is not empty; give a new folder (nothing "
                            "was written)")  # fmt: skip
        if locations.is_uri(self.out):
            self.root = self.out
            return
        self.root = locations.join(locations.parent(self.out), f".{locations.name(self.out)}.partial-{os.getpid()}")
        try:
            shutil.rmtree(self.root, ignore_errors=True)
            for kind in ("clean", "noisy"):
                os.makedirs(locations.join(self.root, kind))
        except OSError as exc:
            shutil.rmtree(self.root, ignore_errors=True)
            raise write_error(self.out, exc) from None

    def publish(self, names: list[str], manifest: dict) -> str:
        """Check that every pair landed, write the manifest, make the set visible under ``OUT``; returns ``OUT``."""
        try:
            for kind in ("clean", "noisy"):
                landed = {n for n, sub in locations.list_dir(locations.join(self.root, kind)) if not sub}
                missing = [n for n in names if f"{n}.png" not in landed]
                if missing:
                    raise RaytrainError(f"synthesis wrote {len(names) - len(missing)} of {len(names)} {kind} images "
                                        f"to {locations.display(self.out)} (missing e.g. {missing[0]}.png); nothing "
                                        "was kept")  # fmt: skip
            locations.write_text(locations.join(self.root, "manifest.json"), json.dumps(manifest, indent=2))
            if not locations.is_uri(self.out):
                if os.path.isdir(self.out):
                    os.rmdir(self.out)  # empty (checked at the start)
                os.replace(self.root, self.out)
        except OSError as exc:
            self.abort()
            raise write_error(self.out, exc) from None
        except BaseException:
            self.abort()
            raise
        return self.out

    def abort(self) -> None:
        try:
            locations.remove(self.root)
        except RaytrainError:
            pass  # best effort: the failure that brought us here is what the user needs to read


def write_pair(root: str, name: str, clean: np.ndarray, noisy: np.ndarray, bits: int = 8) -> None:
    """One pair as ``bits``-bit PNGs (16 for a camera whose files are 16-bit: 8 would quantise its noise)."""
    locations.write_bytes(locations.join(root, "clean", f"{name}.png"), png_bytes(clean, bits))
    locations.write_bytes(locations.join(root, "noisy", f"{name}.png"), png_bytes(noisy, bits))


def names_for(names: list[str], copies: int) -> list[tuple[int, str]]:
    """(image index, output name) for every copy; names must be unique (they are file stems)."""
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DataError(f"clean images with the same name: {', '.join(dup[:5])}")
    return [(i, n if copies == 1 else f"{n}_{k}") for i, n in enumerate(names) for k in range(copies)]


def write_pairs(images: Iterable, source: Source, out: str | Path, copies: int = 1, progress: bool = True,
                describe: dict | None = None, bits: int = 8) -> str:  # fmt: skip
    """Synthesise ``copies`` noisy versions of every image (objects with ``name`` and ``pixels``) into ``out`` (a
    local folder or a URI) as ``bits``-bit PNGs; returns its location."""
    from tqdm import tqdm

    images = list(images)
    if not images:
        raise DataError("no clean images to synthesise from")
    jobs = names_for([im.name for im in images], copies)
    pairs = PairSet(out)
    try:
        for n, (i, name) in enumerate(tqdm(jobs, desc="synthesize", unit="img", disable=None if progress else True)):
            clean = load(images[i].pixels)  # a stored image (data.stream) is read here
            write_pair(pairs.root, name, clean, source(clean, n), bits)
    except BaseException as exc:
        pairs.abort()
        if isinstance(exc, OSError):
            raise write_error(out, exc) from None
        raise
    names = [n for _, n in jobs]
    return pairs.publish(names, {"count": len(jobs), "bits": bits, "source": describe or {}, "names": names})


class _RayWriter:
    """A Ray Data actor: loads the SeNM-VAE once, then synthesises each batch and writes it to the set's root (a URI
    every node writes, or a folder every node mounts)."""

    def __init__(self, root: str, color: str, source_args: tuple, source_kwargs: dict, bits: int = 8):
        self.source = VAESource(*source_args, **source_kwargs)
        self.root, self.color, self.bits = root, color, bits

    def __call__(self, batch: dict) -> dict:
        from raytrain.data.images import read_image

        for idx, path, name in zip(batch["index"], batch["path"], batch["name"], strict=True):
            clean = read_image(path, self.color)
            write_pair(self.root, name, clean, self.source(clean, int(idx)), self.bits)
        return {"name": batch["name"]}


def actor_gpus(device: str) -> int:
    """GPUs per synthesis actor for a ``--device`` request: ``auto``, one when the cluster has GPUs; ``cuda[:N]``,
    one (Ray picks which: an actor sees only its own); ``cpu``, none."""
    import ray

    spec = (device or "auto").strip().lower()
    if spec == "cpu":
        return 0
    if spec.startswith("cuda"):
        if ray.cluster_resources().get("GPU", 0) < 1:
            raise RaytrainError(f"--device {device}: the Ray cluster has no GPUs")
        return 1
    if spec != "auto":
        raise RaytrainError(f"--device {device!r}: expected auto, cpu, cuda or cuda:N")
    return int(ray.cluster_resources().get("GPU", 0) >= 1)


def write_pairs_ray(files: list[str], checkpoint: str, out: str | Path, level: float | None = None,
                    temperature: float | str | None = None, seed: int = 0, copies: int = 1, actors: int = 2,
                    gpus: int = 0, bits: int = 8, **source_kwargs) -> str:  # fmt: skip
    """:func:`write_pairs` for a large folder as a Ray Data job (``actors`` model replicas, on the running Ray): the
    actors read the clean files and write the pairs where they run, so on a cluster both must be where every node
    reads and writes (URIs, or folders every node mounts: checked before it starts). Same names, seeds and manifest as
    the in-process path; ``gpus``: GPUs per actor (each runs its model there); ``bits``: the PNGs' depth (8 or 16);
    ``source_kwargs`` go to :class:`VAESource` (mode, content, normalize, allow_content_floor, overrides)."""
    import ray

    from raytrain.train.cluster import check_storage, check_visible, other_nodes

    source_args = (str(checkpoint), level, temperature, seed)
    source_kwargs.pop("device", None)
    source = VAESource(*source_args, **source_kwargs)  # validates level/kind/floor once, on the driver's CPU
    source_kwargs["device"] = "cuda" if gpus else "cpu"
    nodes = other_nodes()
    from raytrain.models import is_model_uri

    model = [] if is_model_uri(str(checkpoint)) else [find_inference_file(checkpoint)]  # an MLflow model: its store
    check_visible([str(f) for f in files] + model, "the file", nodes)
    jobs = names_for([stem(f) for f in files], copies)
    pairs = PairSet(out)
    rows = [{"index": n, "path": str(files[i]), "name": name} for n, (i, name) in enumerate(jobs)]
    try:
        check_storage(pairs.root, nodes, "--out")
        ds = ray.data.from_items(rows).map_batches(
            _RayWriter, batch_size=8, compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=1, num_gpus=gpus,
            fn_constructor_args=(pairs.root, source.color, source_args, source_kwargs, bits),
        )  # fmt: skip
        ds.materialize()
    except BaseException:
        pairs.abort()
        raise
    names = [n for _, n in jobs]
    return pairs.publish(names, {"count": len(rows), "bits": bits, "source": source.describe(), "names": names})


def as_synthesizer(source: Source, seed_offset: int = 10_000):
    """A (clean (1, C, H, W), level) -> noisy tensor view of a numpy source, for :func:`raytrain.evaluate.noise_rows`.
    Fitted models ignore the level (they are the baselines: one model for the whole camera)."""
    counter = iter(range(seed_offset, 2**31))

    def synth(clean: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        return to_tensor(source(to_image(clean), next(counter)), clean.device)

    return synth
