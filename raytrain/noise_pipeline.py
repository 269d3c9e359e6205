"""``raytrain pipeline``: SeNM-VAE noise model -> synthetic pairs -> downstream denoisers -> evaluation (Sec. 4 of the
SeNM-VAE paper), with the baselines of its Table 1 in the same table.

Super-resolution (``data.scale`` > 1, Sec. 4.6, Tables 4-5): the pairs are (HR, LR). The noise models learn the LR
camera's y = B(x) + n' on (B(HR), LR) pairs (B: bicubic down-sampling; the noise model's run sets
``data.downscale_clean``), synthesis turns each clean-only HR image x into (x, noise(B(x))), the downstream model is
an RRDB, and the ``bicubic`` arm adds (x, B(x)) pairs without noise. Noise quality is measured on the held-out
(B(HR), LR) pairs, SR quality (PSNR, SSIM, LPIPS when ``pipeline.lpips`` is set) on the held-out (HR, LR) pairs.

Every stage is an MLflow run under one parent run (tags ``raytrain.stage``, ``raytrain.arm``, the run ids it used), so
each number of the final table can be traced back to the runs and files that made it. Every arm uses the same split of
the same collection (same seed), so all denoisers are scored on the same held-out real pairs, and the noise models on
the same pairs too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from raytrain import locations
from raytrain.config import RunConfig, apply_overrides, to_raw, validate
from raytrain.data.collection import Collection, load_domains
from raytrain.data.degrade import fit_gaussian, fit_heteroscedastic
from raytrain.data.images import Image, bit_depth
from raytrain.data.stored import pixels
from raytrain.errors import RaytrainError
from raytrain.evaluate import evaluate_pairs, noise_fid, noise_rows
from raytrain.inference import load_restorer
from raytrain.layout import to_image
from raytrain.locations import OutputFolder
from raytrain.metrics import PROFILE, STRUCTURE, mean_std
from raytrain.pipeline_report import (
    PICTURE_ROWS,
    plot_denoise_samples,
    plot_noise_samples,
    plot_sr_samples,
    write_tables,
)
from raytrain.sr_pipeline import build_lpips, lr_view, sr_sources
from raytrain.synthesis import FittedSource, VAESource, as_synthesizer, write_pairs
from raytrain.tracking import Run
from raytrain.train.preflight import outputs_folder

SYNTHETIC_ARMS = ("senm", "gaussian", "heteroscedastic", "bicubic")


@dataclass
class PipelineResult:
    rows: dict[str, dict[str, str | float]]  # arm -> column -> value
    out: OutputFolder  # tables, pictures and synthetic pair sets (``out.where()``: its location; ``out / f``: a file)
    parent_run_id: str | None
    runs: dict[str, str] = field(default_factory=dict)  # "stage/arm" -> MLflow run id
    wall_s: float = 0.0


def fitted_sources(collection: Collection, seed: int) -> dict[str, FittedSource]:
    """The Gaussian and heteroscedastic baselines, fitted on the run's real paired set (the few pairs)."""
    paired = collection.domains["paired"]
    pairs = [(pixels(c), pixels(n)) for c, n in zip(paired.clean, paired.noisy, strict=True)]  # the few pairs
    return {
        "gaussian": FittedSource(fit_gaussian(pairs), seed),
        "heteroscedastic": FittedSource(fit_heteroscedastic(pairs), seed),
    }


def camera_bits(collection: Collection) -> int:
    """The bit depth of the camera's files, read off its real noisy images (the held-out ones, else the first paired
    ones): 8 when every one is on the 8-bit levels, else 16. Synthetic pairs are written at it."""
    noisy = [p.noisy for p in collection.val] or [pixels(n) for n in (collection.domains["paired"].noisy or [])[:4]]
    return bit_depth(noisy)


def source_images(collection: Collection) -> list[Image]:
    """The clean-only (source) images of the split: what synthesis turns into pairs."""
    clean = collection.domains["source"].clean or []
    if not clean:
        raise RaytrainError("pipeline: the split has no clean-only (source) images to synthesise from")
    return [Image(f"source_{i:05d}", c) for i, c in enumerate(clean)]


def noise_config(cfg: RunConfig, name: str) -> RunConfig:
    """The noise model's run: the pipeline's config without its pipeline section (an SR run's learns the LR camera on
    (B(HR), LR) pairs: ``data.downscale_clean``)."""
    raw = to_raw(cfg)
    raw.pop("pipeline")
    sets = [f"name={name}"] + (["data.downscale_clean=true"] if cfg.data.scale > 1 else [])
    if cfg.tracking.register:
        sets.append(f"tracking.register={cfg.tracking.register}-noise")
    return validate(apply_overrides(raw, sets), "pipeline")


def downstream_config(cfg: RunConfig, arm: str, name: str, synthetic: str | None) -> RunConfig:
    """The denoiser run of one arm: the run's data and split, the downstream method and schedule."""
    raw = to_raw(cfg)
    raw.pop("pipeline", None)
    down = cfg.pipeline.downstream
    raw["name"], raw["method"], raw["train"] = (
        name,
        down.method.model_dump(mode="json"),
        down.train.model_dump(mode="json"),
    )
    raw["data"].pop("synthetic", None)
    if down.patches is not None:
        raw["data"]["patches"] = down.patches.model_dump(mode="json")
    if down.scaling is not None:
        raw["scaling"] = down.scaling.model_dump(mode="json")
    overrides = []
    raw["data"].pop("synthetic_fraction", None)
    if synthetic is not None:
        overrides.append(f"data.synthetic={synthetic}")
        if cfg.pipeline.synthetic_fraction is not None:
            overrides.append(f"data.synthetic_fraction={cfg.pipeline.synthetic_fraction}")
    if cfg.tracking.register:
        overrides.append(f"tracking.register={cfg.tracking.register}-{arm}")
    if arm == "all_real":
        raw["data"].pop("paired", None)
        overrides.append("data.paired.fraction=1.0")
    return validate(apply_overrides(raw, overrides), f"pipeline arm {arm}")


def noise_quality(name: str, synth, pairs, fid_net=None, fid_patch: int = 64, keep: list | None = None
                  ) -> dict[str, float]:  # fmt: skip
    """Mean noise-quality columns of one noise model on real pairs; ``fid`` too when an Inception net is given.
    ``keep`` receives the synthetic noisy images."""
    gen: list[np.ndarray] = [] if keep is None else keep
    rows = noise_rows(synth, pairs, keep=gen)
    keys = ("kld", "kld_noisy", "akld", "rho", "noise_std", "rho_real", "noise_std_real", *PROFILE,
            *STRUCTURE, *(f"{k}_real" for k in (*STRUCTURE, *PROFILE)))  # fmt: skip
    out = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    if fid_net is not None:
        out["fid"] = noise_fid(fid_net, [noisy for _, noisy in pairs], gen, fid_patch)
    return out


def run_pipeline(cfg: RunConfig, parent_run_id: str | None = None) -> PipelineResult:
    """Run every stage; returns the table rows. Raises RaytrainError on user errors. Every stage is a child run of
    one parent run (itself a child of ``parent_run_id`` when given); all end with their real status."""
    from raytrain.tracking import Store

    if cfg.pipeline is None:
        raise RaytrainError("this config has no pipeline: section (see configs/senm_pipeline.yaml)")
    build_lpips(cfg.pipeline.lpips)  # its files are checked now, not after the training stages
    from raytrain.train.launch import preflight

    # the noise model's run and the denoisers' (their own scaling) checked before the parent run opens: a cluster
    # that cannot hold them, a file tracking store or storage only this machine sees is one line, nothing recorded
    preflight(noise_config(cfg, f"{cfg.name}-check-noise"))
    preflight(downstream_config(cfg, cfg.pipeline.arms[0], f"{cfg.name}-check-dn", None))
    t0 = time.perf_counter()
    with Store.of(cfg).run(f"{cfg.name}-pipeline", parent_run_id, {"raytrain.stage": "pipeline"}) as parent:
        parent.log_config(cfg)
        stages = Stages(cfg, parent, (parent.run_id or time.strftime("%Y%m%d-%H%M%S"))[:8])
        collection = load_domains(cfg)
        print(f"[pipeline] split {collection.split.sizes()}, held-out real pairs: {', '.join(collection.val_names)}")
        low = lr_view(collection, cfg.data.scale)
        sources = stages.noise_model(low)
        folders = stages.synthesize(collection, sr_sources(sources, cfg.data.scale, cfg.pipeline.arms))
        trained = stages.downstream(folders)
        return stages.evaluate(collection, low, sources, trained, t0)


class Stages:
    """The pipeline's four stages; each records the MLflow run ids it made in ``runs`` ("stage/arm" -> id)."""

    def __init__(self, cfg: RunConfig, parent: Run, tag: str):
        self.cfg, self.parent, self.tag = cfg, parent, tag
        # under storage_path when set (the downstream runs' workers read the synthetic pairs there), else the workdir
        self.out = OutputFolder(outputs_folder(cfg, "pipelines", f"{cfg.name}-{tag}"))
        self.runs: dict[str, str] = {}

    def noise_model(self, collection: Collection) -> dict[str, object]:
        """1. Train SeNM-VAE; returns the noise sources of the arms (the trained model, the fitted baselines).
        ``collection``: the pairs the noise models learn from (an SR run's LR view)."""
        from raytrain.train.group import run_group

        cfg, p = self.cfg, self.cfg.pipeline
        print("[pipeline] 1/4 noise model (SeNM-VAE)", flush=True)
        name = f"{cfg.name}-{self.tag}-noise"
        (res,) = run_group([noise_config(cfg, name)], name, self.parent.run_id, [{"raytrain.stage": "noise_model"}])
        if not res.checkpoint:
            raise RaytrainError("the noise model produced no checkpoint")
        self.runs["noise_model"] = res.run_id or ""
        sources: dict[str, object] = {}
        if "senm" in p.arms:
            sources["senm"] = VAESource(res.checkpoint, None if p.level == "prior" else float(p.level), p.temperature,
                                        cfg.seed, allow_content_floor=p.allow_content_floor)  # fmt: skip
        sources.update({k: v for k, v in fitted_sources(collection, cfg.seed).items() if k in p.arms})
        return sources

    def synthesize(self, collection: Collection, sources: dict[str, object]) -> dict[str, str]:
        """2. Synthetic pairs from the same clean source tiles, one folder per noise source."""
        cfg, copies = self.cfg, self.cfg.pipeline.copies
        images, bits = source_images(collection), camera_bits(collection)
        print(f"[pipeline] 2/4 synthesis: {len(images)} clean source tiles x {copies} -> {', '.join(sources)} "
              f"({bits}-bit PNGs, as the camera's files)")  # fmt: skip
        folders: dict[str, str] = {}
        for arm, src in sources.items():
            made_by = {"senm": self.runs["noise_model"], "bicubic": "none"}.get(arm, "fitted on paired")
            tags = {"raytrain.stage": "synthesize", "raytrain.arm": arm, "raytrain.noise_model_run": made_by}
            run = self.parent.child(f"{cfg.name}-{self.tag}-synth-{arm}", tags,
                                    {f"source.{k}": v for k, v in src.describe().items()})  # fmt: skip
            folders[arm] = write_pairs(images, src, self.out.where(f"synthetic-{arm}"), copies,
                                       describe=src.describe(), bits=bits)  # fmt: skip
            run.log_text(locations.read_bytes(locations.join(folders[arm], "manifest.json")).decode(), "manifest.json")
            run.log_metrics({"pairs": len(images) * copies})
            run.end()
            if run:
                self.runs[f"synthesize/{arm}"] = run.run_id
        return folders

    def downstream(self, folders: dict[str, str]) -> dict[str, str]:
        """3. One downstream denoiser per arm; returns arm -> checkpoint."""
        from raytrain.train.group import concurrency, run_group

        cfg, arms = self.cfg, self.cfg.pipeline.arms
        trained: dict[str, str] = {}
        dcfgs = [downstream_config(cfg, arm, f"{cfg.name}-{self.tag}-dn-{arm}", folders.get(arm)) for arm in arms]
        print(f"[pipeline] 3/4 downstream {cfg.pipeline.downstream.method.name} x {len(arms)} ({', '.join(arms)}), "
              f"{concurrency(dcfgs)} at a time", flush=True)  # fmt: skip
        tags = [{"raytrain.stage": "downstream", "raytrain.arm": arm,
                 "raytrain.synthesis_run": self.runs.get(f"synthesize/{arm}", "none")} for arm in arms]  # fmt: skip
        results = run_group(dcfgs, f"{cfg.name}-{self.tag}-downstream", self.parent.run_id, tags)
        for arm, r in zip(arms, results, strict=True):
            self.runs[f"downstream/{arm}"] = r.run_id or ""
            if not r.checkpoint:
                raise RaytrainError(f"downstream arm {arm} produced no checkpoint")
            trained[arm] = r.checkpoint
        return trained

    def evaluate(self, collection: Collection, low: Collection, sources: dict, trained: dict[str, str], t0: float
                 ) -> PipelineResult:  # fmt: skip
        """4. Every arm on the held-out real pairs: the table, its files and a picture of the noise. ``low``: the
        pairs the noise is scored on (an SR run's LR view; else ``collection``)."""
        print("[pipeline] 4/4 evaluation on the held-out real pairs")
        tags = {"raytrain.stage": "evaluate", "raytrain.val_images": ",".join(collection.val_names)}
        run = self.parent.child(f"{self.cfg.name}-{self.tag}-eval",
                                tags | {f"raytrain.used.{k}": v for k, v in self.runs.items()})  # fmt: skip
        rows, samples, outputs = evaluate_where(self.cfg, sources, trained, collection.val, low.val)
        result = PipelineResult(rows, self.out, self.parent.run_id, self.runs, time.perf_counter() - t0)
        plot_noise_samples(low.val, samples, self.out / "noise_samples.png")
        if self.cfg.data.scale > 1:
            plot_sr_samples(collection.val[:PICTURE_ROWS], outputs, self.out / "sr_samples.png", self.cfg.data.scale)
        else:
            plot_denoise_samples(collection.val[:PICTURE_ROWS], outputs, self.out / "denoise_samples.png")
        write_tables(result, self.cfg, [run, self.parent])
        self.out.publish()
        run.end()
        if run:
            self.runs["evaluate"] = run.run_id
        return result


def evaluate_where(cfg: RunConfig, sources: dict, trained: dict[str, str], pairs, noise_pairs,
                   gpus: int | None = None) -> tuple[dict, dict, dict]:  # fmt: skip
    """:func:`evaluate` on the workers' device: here (on this machine's GPU when ``scaling.use_gpu`` and it has one,
    else its CPU), or, when the runs use GPUs and this driver has none (a cluster's head node), as a Ray task on a GPU
    node (``gpus``: GPUs that task asks for; default 1 there, and no task otherwise). Returns (rows, samples,
    outputs)."""
    import torch

    if gpus is None:
        gpus = 1 if cfg.scaling.use_gpu and not torch.cuda.is_available() else 0
        if not gpus:
            device = "cuda" if cfg.scaling.use_gpu else "cpu"
            samples: dict = {}
            outputs: dict = {}
            rows = evaluate(cfg, sources, trained, pairs, samples, noise_pairs, outputs, device)
            return rows, samples, outputs
    import ray

    senm = sources.get("senm")
    recipe = (senm.args, senm.kwargs) if senm is not None else None
    others = {k: v for k, v in sources.items() if k != "senm"}
    task = ray.remote(num_gpus=gpus, num_cpus=1)(_evaluate_task)
    return ray.get(task.remote(to_raw(cfg), recipe, others, trained, pairs, noise_pairs))


def _evaluate_task(raw: dict, recipe, others: dict, trained: dict[str, str], pairs, noise_pairs):
    """:func:`evaluate` in a Ray task: the SeNM-VAE source rebuilt from its checkpoint on this node's device."""
    from raytrain.inference import resolve_device

    cfg, device = validate(raw, "config"), resolve_device("auto")
    sources = dict(others)
    if recipe is not None:
        args, kwargs = recipe
        sources["senm"] = VAESource(*args, device=device, **kwargs)
    samples: dict = {}
    outputs: dict = {}
    rows = evaluate(cfg, sources, trained, pairs, samples, noise_pairs, outputs, device)
    return rows, samples, outputs


def evaluate(cfg: RunConfig, sources: dict, trained: dict[str, str], pairs, samples: dict | None = None,
             noise_pairs=None, outputs: dict | None = None, device="cpu") -> dict[str, dict]:  # fmt: skip
    """Every arm's row: its noise model's quality (synthetic arms, on ``noise_pairs``, default ``pairs``) and its
    denoiser's (SR net's) PSNR/SSIM on ``pairs``, with LPIPS when ``pipeline.lpips`` is set. ``samples`` receives
    each noise model's synthetic noisy images (arm -> list, in the order of ``noise_pairs``), ``outputs`` each arm's
    restored images (the first :data:`PICTURE_ROWS`, in the order of ``pairs``). The denoisers run on ``device``
    (the SeNM-VAE source on its own)."""
    from raytrain.inference import on_device, resolve_device

    device = resolve_device(device)
    noise_pairs = pairs if noise_pairs is None else noise_pairs
    lpips = build_lpips(cfg.pipeline.lpips)
    rows: dict[str, dict] = {}
    for arm in cfg.pipeline.arms:
        row: dict = {}
        if arm in sources:
            src = sources[arm]
            synth = src.synthesize if arm == "senm" else as_synthesizer(src)
            keep = samples.setdefault(arm, []) if samples is not None else None  # an empty dict is falsy: no `or`
            import torch

            torch.manual_seed(cfg.seed)  # the same draws wherever it runs (here or a Ray task), run after run
            row.update(noise_quality(arm, synth, noise_pairs, keep=keep))
        _, denoiser = load_restorer(trained[arm], device)
        restore = on_device(denoiser.restore, device)
        if outputs is not None:
            kept = outputs.setdefault(arm, [])

            def restore(x, net=restore, kept=kept):
                y = net(x)
                if len(kept) < PICTURE_ROWS:  # only what the picture shows (90 HR images would be gigabytes)
                    kept.append(to_image(y.clamp(0, 1)))
                return y

        scores = evaluate_pairs(restore, pairs, lpips=lpips)
        row["psnr"], row["psnr_std"] = mean_std([s["psnr"] for s in scores])
        row["n_images"] = len(scores)
        row["ssim"], _ = mean_std([s["ssim"] for s in scores])
        row["psnr_noisy"], _ = mean_std([s["psnr_noisy"] for s in scores])
        row["ssim_noisy"], _ = mean_std([s["ssim_noisy"] for s in scores])
        if lpips is not None:
            row["lpips"], _ = mean_std([s["lpips"] for s in scores])
            row["lpips_noisy"], _ = mean_std([s["lpips_noisy"] for s in scores])
        rows[arm] = row
    return rows
