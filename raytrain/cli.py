"""The ``raytrain`` console script. Nothing imports this module.

Every user error ends as one line on stderr (``raytrain: error: ...``) and exit code 2; ``--debug`` shows the
traceback. Heavy imports (Ray, MLflow, torch) happen inside the commands so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _add_overrides(parser: argparse.ArgumentParser, help: str = "override a config value (repeatable)") -> None:
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="raytrain", description="Train and tune image-restoration models on Ray.")
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    p.add_argument("--verbose", action="store_true",
                   help="show Ray's and MLflow's own output too (worker and actor logs, start-up notices)")  # fmt: skip
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a method on Ray Train (embedded local Ray unless --address)")
    t.add_argument("config", nargs="?", help="YAML config (omit for the embedded defaults)")
    _add_overrides(t, "override a config value, e.g. --set train.steps=100 (repeatable)")
    t.add_argument("--address", help="Ray cluster address (e.g. ray://head:10001 or auto)")
    t.add_argument("--num-workers", type=int, help="number of Ray Train workers")

    e = sub.add_parser("eval", help="PSNR/SSIM table of a checkpoint on a set of images")
    e.add_argument("checkpoint", help="checkpoint folder, run folder or model.pt")
    e.add_argument(
        "--data",
        help="clean images: a folder, a URI or 'samples' (default: the run's held-out "
        "validation images, rebuilt from the config stored in the checkpoint)",
    )
    e.add_argument("--noisy", help="folder of real noisy images with the same names (else the run's noise model)")
    _add_overrides(e, "override the checkpoint's data config, e.g. --set data.noise.sigma=50")
    e.add_argument("--crop", type=int, help="evaluate a centre crop of this size")
    e.add_argument("--max-size", type=int, help="shrink --data images to this longer side (default: score as given)")
    e.add_argument("--tile", type=int, default=512, help="restore larger images in overlapping tiles of this size")

    d = sub.add_parser("denoise", help="restore an image or a folder of images with a checkpoint")
    d.add_argument("checkpoint")
    d.add_argument("input", help="image file or folder")
    d.add_argument("output", help="output file (for a file input) or folder")

    dnd = sub.add_parser("dnd", help="denoise the DND sRGB benchmark into its submission layout (OUT/bundled/*.mat)")
    dnd.add_argument("checkpoint", help="an RGB restoration checkpoint")
    dnd.add_argument("dnd", help="the DND folder (info.mat, images_srgb/)")
    dnd.add_argument("--out", required=True, help="a new folder for the submission")

    s = sub.add_parser("synthesize", help="write a paired dataset (clean + synthetic noisy) with a SeNM-VAE")
    s.add_argument("checkpoint", help="SeNM-VAE checkpoint folder, run folder or model.pt")
    s.add_argument("--clean", required=True, help="clean images: a folder, a URI or 'samples'")
    s.add_argument("--out", required=True, help="new folder: OUT/clean, OUT/noisy (same names), OUT/manifest.json")
    lv = s.add_mutually_exclusive_group()
    lv.add_argument("--level", type=float, help="noise level (std, 0..255) inside the range seen in training")
    lv.add_argument("--level-prior", action="store_true", help="draw each image's level from training (default)")
    s.add_argument("--temperature", help="scale of the noise latent's prior std: a number (0: the means) or auto "
                   "(calibrated on the training pairs); default: the model's method.temperature")  # fmt: skip
    s.add_argument(
        "--mode",
        choices=["full", "residual"],
        help="full: the decoder output (official); residual: x + the part z_n drives (default: the model's)",
    )
    s.add_argument("--content", choices=["sample", "mean"], help="full mode: z ~ q(z|x) or its means")
    s.add_argument(
        "--normalize",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="shift each image's mean to the clean image's (official --normalize)",
    )
    s.add_argument("--allow-content-floor", action="store_true",
                   help="full mode from a model whose content error exceeds method.max_content_floor")  # fmt: skip
    s.add_argument("--copies", type=int, default=1, help="noisy versions per clean image (NAME_k)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--ray", action="store_true", help="run as a Ray Data job (default for folders over 500 images)")
    s.add_argument("--actors", type=int, default=2, help="model replicas of the Ray Data job")
    s.add_argument("--address", help="Ray cluster for the Ray Data job (default: a local one)")

    ne = sub.add_parser("noise-eval", help="noise quality of a SeNM-VAE beside fitted baselines (Table 1 columns)")
    ne.add_argument("checkpoint", help="SeNM-VAE checkpoint")
    ne.add_argument("--data", help="clean images of real pairs (default: the run's held-out validation pairs)")
    ne.add_argument("--noisy", help="real noisy images with the same names as --data")
    ne.add_argument("--no-baselines", action="store_true", help="skip the Gaussian/heteroscedastic baselines")
    ne.add_argument(
        "--inception",
        metavar="FILE",
        help="Inception-v3 weights (torchvision inception_v3 or pytorch-fid pt_inception .pth): adds FID",
    )
    ne.add_argument("--fid-patch", type=int, default=64, help="FID over tiles of this size (default 64)")
    ne.add_argument(
        "--denoiser",
        action="append",
        default=[],
        metavar="LABEL=CKPT",
        help="add a downstream PSNR column: a denoiser checkpoint and its row label (repeatable)",
    )
    ne.add_argument("--crop", type=int, help="evaluate a centre crop of this size")

    pl = sub.add_parser("pipeline", help="noise model -> synthesis -> downstream denoisers -> evaluation")
    pl.add_argument("config", help="SeNM-VAE config with a pipeline: section (e.g. configs/senm_pipeline.yaml)")
    _add_overrides(pl)
    pl.add_argument("--address", help="Ray cluster address")

    tu = sub.add_parser("tune", help="search a space with Ray Tune + Optuna (each trial a TorchTrainer run)")
    tu.add_argument("config", help="the base run config")
    tu.add_argument("--space", required=True, help="search space YAML (search_spaces/*.yaml)")
    tu.add_argument("--samples", type=int, default=8, help="number of trials")
    tu.add_argument("--concurrent", type=int, default=1, help="trials at once (checked against the CPUs/GPUs)")
    tu.add_argument("--metric", help="validation metric(s), comma-separated for multi-objective (default: the space's)")
    tu.add_argument("--mode", help="min or max per metric (default: the space's)")
    tu.add_argument("--scheduler", choices=["fifo", "asha"], default="fifo", help="asha: stop poor trials early")
    tu.add_argument("--name", help="sweep name (default: <config name>-sweep); its folder is workdir/sweeps/NAME")
    tu.add_argument("--resume", action="store_true", help="continue an interrupted sweep of the same name")
    tu.add_argument("--seed", type=int, help="the sampler's seed (default: the config's seed)")
    _add_overrides(tu)
    tu.add_argument("--address", help="Ray cluster address")

    ab = sub.add_parser("ablate", help="a grid x method variants; mean ± std tables (Markdown, CSV) and plots")
    ab.add_argument("config")
    ab.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="a grid axis, e.g. --grid data.paired.count=10,96,960 --grid seed=0,1,2 (repeatable)",
    )
    ab.add_argument("--variants", help="comma-separated ablation variants of the method (e.g. full,no_bcm)")
    ab.add_argument("--metric", help="validation metric of the table (default: the method's headline)")
    ab.add_argument("--concurrent", type=int, default=1)
    ab.add_argument("--name", help="ablation name (default: <config name>-ablate)")
    ab.add_argument("--resume", action="store_true")
    _add_overrides(ab)
    ab.add_argument("--address", help="Ray cluster address")

    sb = sub.add_parser("submit", help="validate a jobs/*.yaml spec and submit it to a Ray cluster (Ray Jobs)")
    sb.add_argument("spec", help="job spec YAML (jobs/*.yaml)")
    sb.add_argument("--address", help="the cluster's dashboard URL (default: the spec's, RAY_ADDRESS, or local)")
    sb.add_argument("--wait", action="store_true", help="follow the logs until the job ends; exit 1 unless it succeeds")
    sb.add_argument("--dry-run", action="store_true", help="validate and print the command; submit nothing")

    jb = sub.add_parser("jobs", help="status, logs or stop of a submitted job")
    jb.add_argument("action", choices=["status", "logs", "stop", "list"])
    jb.add_argument("job_id", nargs="?")
    jb.add_argument("--address")

    dm = sub.add_parser("demo", help="the main demo: SeNM-VAE -> DnCNN vs the real pairs alone + a short LIR run")
    dm.add_argument("--workdir", default="runs/demo", help="where runs, MLflow (SQLite) and the results go")
    dm.add_argument("--counts", default="10", help="paired tile counts, comma-separated (each a pipeline run)")
    dm.add_argument("--arms", default="senm,real_pairs",
                    help="pipeline arms, comma-separated (also: gaussian, heteroscedastic, all_real)")  # fmt: skip
    dm.add_argument("--quick", action="store_true", help="a few steps per run (a smoke test, not results)")

    cr = sub.add_parser("config-reference", help="write the configuration reference generated from the typed configs")
    cr.add_argument("--out", default="docs/config.md")

    data = sub.add_parser("data", help="inspect the data a config produces")
    dsub = data.add_subparsers(dest="data_command", required=True)
    pv = dsub.add_parser("preview", help="write a grid of sample patches of each domain")
    pv.add_argument("config", nargs="?")
    pv.add_argument("--out", required=True, help="PNG file to write")
    _add_overrides(pv)
    pv.add_argument("--per-domain", type=int, default=8)
    return p  # fmt: skip


def cmd_train(args: argparse.Namespace) -> int:
    from raytrain.config import load_config

    overrides = list(args.overrides)
    if args.address:
        overrides.append(f"address={args.address}")
    if args.num_workers is not None:
        overrides.append(f"scaling.num_workers={args.num_workers}")
    cfg = load_config(args.config, overrides)
    from raytrain.tracking import resolve_uri
    from raytrain.train.launch import run_training

    res = run_training(cfg)
    m = res.metrics
    print(f"\nrun {cfg.name}: {int(m.get('step', 0))} steps, method {cfg.method.name}")
    if "val_psnr" in m:
        print(f"  validation PSNR {m['val_psnr']:.2f} dB (noisy input {m['val_psnr_noisy']:.2f} dB), "
              f"SSIM {m['val_ssim']:.4f} (noisy {m['val_ssim_noisy']:.4f})")  # fmt: skip
    print(f"  checkpoint: {res.checkpoint}")
    if res.run_id:
        uri = resolve_uri(cfg.tracking.uri, cfg.workdir)
        print(f"  MLflow run {res.run_id} in {uri}")
        if uri.startswith("sqlite"):
            print(f"  view it: mlflow ui --backend-store-uri {uri} --host 127.0.0.1")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from raytrain.config import apply_overrides, to_raw, validate
    from raytrain.data.degrade import noise_model, rng_for
    from raytrain.data.images import load_collection, load_pairs
    from raytrain.data.pipeline import centre_crop, chw
    from raytrain.evaluate import evaluate_pairs, tiled
    from raytrain.inference import load_restorer
    from raytrain.metrics import format_mean_std

    cfg, method = load_restorer(args.checkpoint)
    cfg = validate(apply_overrides(to_raw(cfg), args.overrides), "eval --set")
    color = cfg.data.color
    if args.data is None:
        from raytrain.data.pipeline import load_domains

        col = load_domains(cfg)
        pairs = [(n.transpose(1, 2, 0), c.transpose(1, 2, 0)) for n, c in col.val]
        names = col.val_names
        print(f"held-out validation images of the run (split seed {cfg.seed}): {', '.join(names)}")
    elif args.noisy:
        real = load_pairs(args.data, args.noisy, color)
        pairs = [(n.pixels, c.pixels) for c, n in real]
        names = [c.name for c, _ in real]
    else:
        model = noise_model(cfg.data.noise)
        imgs = load_collection(args.data, color, args.max_size)  # as given (the run's max_size is for training)
        pairs = [(model(im.pixels, rng_for(cfg.seed, 0, i)), im.pixels) for i, im in enumerate(imgs)]
        names = [im.name for im in imgs]
    pairs = [(chw(centre_crop(n, args.crop)), chw(centre_crop(c, args.crop))) for n, c in pairs]
    rows = evaluate_pairs(tiled(method.restore, args.tile), pairs)
    w = max(len(n) for n in names)
    print(f"{'image':<{w}}  {'PSNR noisy':>10}  {'PSNR':>7}  {'SSIM noisy':>10}  {'SSIM':>7}")
    for n, r in zip(names, rows, strict=True):
        print(f"{n:<{w}}  {r['psnr_noisy']:>10.2f}  {r['psnr']:>7.2f}  {r['ssim_noisy']:>10.4f}  {r['ssim']:>7.4f}")
    for k in ("psnr_noisy", "psnr", "ssim_noisy", "ssim"):
        print(f"mean ± std {k}: {format_mean_std([r[k] for r in rows], 4 if 'ssim' in k else 2)}")
    return 0


def cmd_denoise(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from raytrain.data.images import EXTENSIONS, list_images, read_image, to_uint8
    from raytrain.errors import DataError
    from raytrain.evaluate import tiled, to_tensor
    from raytrain.files import atomic_write_bytes, make_dirs
    from raytrain.inference import load_restorer

    cfg, method = load_restorer(args.checkpoint)
    src, dst = Path(args.input), Path(args.output)
    if src.is_dir():
        jobs = [(f, dst / (f.stem + ".png")) for f in list_images(src)]
        make_dirs(dst)
    elif src.is_file():
        if dst.suffix.lower() not in EXTENSIONS:
            raise DataError(f"{dst}: output must end in one of {', '.join(EXTENSIONS)}")
        make_dirs(dst.parent)
        jobs = [(src, dst)]
    else:
        raise DataError(f"{src}: no such file or folder")
    import imageio.v3 as iio

    for f, out in tqdm(jobs, desc="denoise", unit="img", disable=len(jobs) < 2):
        img = read_image(f, cfg.data.color)
        x = to_tensor(img.transpose(2, 0, 1))
        y = tiled(method.restore)(x).clamp(0, 1)[0].numpy().transpose(1, 2, 0)
        atomic_write_bytes(iio.imwrite("<bytes>", to_uint8(y), extension=out.suffix.lower()), out)
    print(f"wrote {len(jobs)} image(s) to {dst}")
    return 0


def cmd_dnd(args: argparse.Namespace) -> int:
    from raytrain.errors import ConfigError
    from raytrain.inference import load_restorer
    from raytrain.submission import dnd_submission

    cfg, method = load_restorer(args.checkpoint)
    if cfg.data.color != "rgb":
        raise ConfigError(f"{args.checkpoint}: a {cfg.data.color} model (data.color); DND's crops are RGB")
    n = dnd_submission(method.restore, args.dnd, args.out)
    print(f"wrote {n} image(s) of denoised crops to {Path(args.out) / 'bundled'} (submit that folder's files)")
    return 0


def cmd_synthesize(args: argparse.Namespace) -> int:
    from raytrain.data.images import is_uri, list_images, load_collection
    from raytrain.errors import DataError
    from raytrain.synthesis import VAESource, write_pairs, write_pairs_ray

    if args.copies < 1:
        raise DataError(f"--copies must be >= 1 (got {args.copies})")
    kw = {"mode": args.mode, "content": args.content, "normalize": args.normalize,
          "allow_content_floor": args.allow_content_floor}  # fmt: skip
    src = VAESource(args.checkpoint, args.level, args.temperature, args.seed, **kw)
    folder = Path(args.clean)
    files = list_images(folder) if folder.is_dir() else []
    if args.ray or len(files) > 500:
        if not files:
            raise DataError(f"{args.clean}: --ray needs a local folder of images")
        import ray

        if args.address:
            from raytrain.console import ray_init_kwargs

            ray.init(address=args.address, **ray_init_kwargs())
        else:
            from raytrain import localray

            localray.start(max(2, args.actors))
        out = write_pairs_ray(files, args.checkpoint, args.out, args.level, args.temperature, args.seed, args.copies,
                              args.actors, **kw)  # fmt: skip
    else:
        if args.clean != "samples" and not is_uri(args.clean) and not folder.exists():
            raise DataError(f"{args.clean}: no such folder")
        images = load_collection(args.clean, src.color, None)
        out = write_pairs(images, src, args.out, args.copies, describe=src.describe())
    d = src.describe()
    level = d["level"] if d["level"] == "prior" else f"{d['level']:g}"
    print(f"wrote synthetic pairs to {out} ({d['mode']} synthesis, level {level}, trained range "
          f"{d['trained_level_range']}, temperature {d['temperature']:.3g}); train on them with "
          f"--set data.synthetic={out}")  # fmt: skip
    return 0


def cmd_noise_eval(args: argparse.Namespace) -> int:
    from raytrain.noise_eval import noise_eval, report

    res = noise_eval(args.checkpoint, args.data, args.noisy, args.crop, not args.no_baselines, args.inception,
                     args.fid_patch, tuple(args.denoiser))  # fmt: skip
    print(report(res))
    return 0


def cmd_pipeline(args: argparse.Namespace) -> int:
    from raytrain.config import load_config
    from raytrain.noise_pipeline import markdown, run_pipeline
    from raytrain.tracking import resolve_uri

    overrides = list(args.overrides) + ([f"address={args.address}"] if args.address else [])
    cfg = load_config(args.config, overrides)
    res = run_pipeline(cfg)
    print(f"\npipeline {cfg.name}: {res.wall_s / 60:.1f} min\n")
    print(markdown(res, cfg))
    print(f"\ntables and run ids: {res.out}")
    if res.parent_run_id:
        print(f"MLflow parent run {res.parent_run_id}: mlflow ui --backend-store-uri "
              f"{resolve_uri(cfg.tracking.uri, cfg.workdir)} --host 127.0.0.1")  # fmt: skip
    return 0


def _headline(cfg) -> tuple[str, str]:
    from raytrain.methods import method_class

    key, _, mode = method_class(cfg.method.name).headline
    return f"val_{key}", mode


def cmd_tune(args: argparse.Namespace) -> int:
    from raytrain.config import check_name, load_config
    from raytrain.tune.driver import run_sweep
    from raytrain.tune.space import load_space

    cfg = load_config(args.config, args.overrides + ([f"address={args.address}"] if args.address else []))
    space = load_space(args.space)
    default_metric, default_mode = _headline(cfg)
    metrics = (args.metric or space.metric or default_metric).split(",")
    modes = (args.mode or space.mode or (default_mode if metrics == [default_metric] else "max")).split(",")
    if len(modes) == 1 and len(metrics) > 1:
        modes = modes * len(metrics)
    name = check_name(args.name or f"{cfg.name}-sweep", "--name")
    res = run_sweep(cfg, space, name, args.samples, args.concurrent, metrics, modes,
                    None if args.scheduler == "fifo" else args.scheduler, "optuna", args.resume, args.seed)  # fmt: skip
    cols = list(space.params) + metrics + ["startup_s"]
    print(f"\nsweep {name}: {len(res.rows)} trials in {res.wall_s:.0f} s")
    from raytrain.tables import markdown_table

    cell = lambda r, c: f"{r[c]:.4g}" if isinstance(r.get(c), float) else str(r.get(c, "–"))  # noqa: E731
    rows = [[r["trial_id"], r["status"], *(cell(r, c) for c in cols)] for r in res.rows]
    print("\n".join(markdown_table(["trial", "status", *cols], rows)))
    ups = [r["startup_s"] for r in res.rows if isinstance(r.get("startup_s"), float)]
    if ups:
        print(f"per-trial overhead (trial start -> first training step): mean {sum(ups) / len(ups):.1f} s, "
              f"max {max(ups):.1f} s")  # fmt: skip
    if res.best_config:
        print(f"best by {metrics[0]}: {res.best[metrics[0]]:.4f}; config: {res.best_config}"
              f"  (raytrain train {res.best_config})")  # fmt: skip
    if res.parent_run_id:
        print(f"MLflow parent run {res.parent_run_id}")
    return 0


def cmd_ablate(args: argparse.Namespace) -> int:
    from raytrain.config import check_name, load_config
    from raytrain.tune.ablate import parse_grid, run_ablation

    cfg = load_config(args.config, args.overrides + ([f"address={args.address}"] if args.address else []))
    metric, mode = _headline(cfg)
    if args.metric:
        metric, mode = args.metric, "max" if "psnr" in args.metric or "ssim" in args.metric else "min"
    grid = parse_grid(args.grid, cfg)
    variants = args.variants.split(",") if args.variants else []
    name = check_name(args.name or f"{cfg.name}-ablate", "--name")
    out = run_ablation(cfg, grid, variants, name, metric, mode, args.concurrent, args.resume)
    print(f"\nablation: {len(out['sweep'].rows)} runs in {out['sweep'].wall_s:.0f} s\n")
    print(out["markdown"])
    print(f"\ntables and plots: {out['folder']} (ablation.md, ablation.csv, {', '.join(p.name for p in out['plots'])})")
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    import shlex

    from raytrain import jobs

    if args.dry_run:
        spec, root = jobs.load_spec(args.spec)
        print(f"valid; would run in {root}: {shlex.join(jobs.command(spec, root))}")
        cfg = jobs.effective_config(spec, root)
        print(f"{cfg.method.name}, recipe {spec.recipe}: {cfg.train.steps} steps, {jobs.lr_summary(cfg)}")
        return 0
    c, job_id, argv = jobs.submit(args.spec, args.address)
    print(f"submitted {job_id}: {shlex.join(argv)}")
    print(f"  raytrain jobs status {job_id} | raytrain jobs logs {job_id} | raytrain jobs stop {job_id}")
    if not args.wait:
        return 0
    status = jobs.wait(c, job_id)
    print(f"\njob {job_id}: {status}")
    if status != "SUCCEEDED":
        print(f"--- last lines of its log ---\n{jobs.tail(c, job_id)}", file=sys.stderr)
        return 1
    return 0


def cmd_jobs(args: argparse.Namespace) -> int:
    from raytrain import jobs
    from raytrain.errors import RaytrainError, first_line

    c = jobs.client(args.address)
    if args.action == "list":
        for j in c.list_jobs():
            print(f"{j.submission_id}  {str(j.status).split('.')[-1]:<10}  {j.entrypoint}")
        return 0
    if not args.job_id:
        raise RaytrainError(f"jobs {args.action} needs a job id (see: raytrain jobs list)")
    try:
        if args.action == "status":
            info = c.get_job_info(args.job_id)
            print(f"{args.job_id}: {str(info.status).split('.')[-1]}" + (f" ({info.message})" if info.message else ""))
        elif args.action == "logs":
            print(c.get_job_logs(args.job_id), end="")
        else:
            print(f"{args.job_id}: {'stop requested' if c.stop_job(args.job_id) else 'already finished'}")
    except RuntimeError as exc:
        raise RaytrainError(f"job {args.job_id}: {first_line(exc)}") from None
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from raytrain.config import ARMS
    from raytrain.demo import run_demo
    from raytrain.errors import ConfigError

    try:
        counts = tuple(int(c) for c in args.counts.split(","))
    except ValueError:
        raise ConfigError(f"--counts {args.counts!r}: expected comma-separated whole numbers, e.g. 10,40") from None
    arms = tuple(a.strip() for a in args.arms.split(",") if a.strip())
    if not arms or set(arms) - set(ARMS):
        raise ConfigError(f"--arms {args.arms!r}: expected some of {', '.join(ARMS)}")
    res = run_demo(args.workdir, counts, args.quick, arms)
    print(f"demo finished in {res['wall_s'] / 60:.1f} min")
    return 0


def cmd_reference(args: argparse.Namespace) -> int:
    from raytrain.reference import config_reference

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(config_reference())
    print(f"wrote {out}")
    return 0


def cmd_preview(args: argparse.Namespace) -> int:
    from raytrain.config import load_config
    from raytrain.data.preview import write_preview

    cfg = load_config(args.config, args.overrides)
    out = write_preview(cfg, Path(args.out), args.per_domain)
    print(f"wrote {out}")
    return 0


RAY_COMMANDS = ("train", "tune", "ablate", "pipeline", "demo", "synthesize")


def _local_ray(args: argparse.Namespace) -> bool:
    """Whether this command would start the embedded local Ray: no --address, no RAY_ADDRESS, no ``address:`` in its
    config (read without validation: a bad config is reported by the command itself)."""
    if args.command not in RAY_COMMANDS or getattr(args, "address", None) or os.environ.get("RAY_ADDRESS"):
        return False
    if getattr(args, "config", None) and args.command != "synthesize":
        from raytrain.config import apply_overrides, read_yaml

        try:
            return not apply_overrides(read_yaml(args.config), list(getattr(args, "overrides", []))).get("address")
        except Exception:  # noqa: BLE001 - the command reports it
            return True
    return True


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from raytrain.console import set_verbose, verbose
    from raytrain.errors import RaytrainError

    set_verbose(args.verbose or verbose())  # before anything imports Ray or MLflow

    if _local_ray(args):
        from raytrain import localray

        localray.prefer_loopback()  # before anything imports ray

    handlers = {"train": cmd_train, "eval": cmd_eval, "denoise": cmd_denoise, "dnd": cmd_dnd, "data": cmd_preview,
                "synthesize": cmd_synthesize, "noise-eval": cmd_noise_eval, "pipeline": cmd_pipeline,
                "tune": cmd_tune, "ablate": cmd_ablate, "submit": cmd_submit, "jobs": cmd_jobs,
                "demo": cmd_demo, "config-reference": cmd_reference}  # fmt: skip
    try:
        return handlers[args.command](args)
    except RaytrainError as exc:
        if args.debug:
            raise
        print(f"raytrain: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("raytrain: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
