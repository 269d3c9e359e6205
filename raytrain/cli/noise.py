"""``raytrain`` subcommands. SeNM-VAE's noise-model commands: synthesize, noise-eval, pipeline."""

from __future__ import annotations

import argparse

from raytrain.cli.common import add_cluster, add_device, add_dry_run, add_overrides, cluster_overrides, print_resolved
from raytrain.cli.runs import CHECKPOINT_HELP, STORED_SET


def add_parsers(sub) -> None:
    _add_synthesize(sub)
    _add_noise_eval(sub)
    pl = sub.add_parser("pipeline", help="noise model -> synthesis -> downstream denoisers -> evaluation")
    pl.add_argument("config", help="SeNM-VAE config with a pipeline: section (e.g. configs/senm_pipeline.yaml)")
    add_overrides(pl)
    add_cluster(pl)
    add_dry_run(pl)
    pl.set_defaults(func=cmd_pipeline)


def _add_synthesize(sub) -> None:
    s = sub.add_parser("synthesize", help="write a paired dataset (clean + synthetic noisy) with a SeNM-VAE")
    s.add_argument("checkpoint", help="a SeNM-VAE: " + CHECKPOINT_HELP)
    s.add_argument("--clean", required=True, help="clean images: a folder (local or a URI) or 'samples'")
    s.add_argument("--out", required=True, help="new folder (local or a URI): OUT/clean, OUT/noisy (same names), "
                   "OUT/manifest.json")  # fmt: skip
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
    s.add_argument("--bits", type=int, choices=(8, 16), default=8,
                   help="the PNGs' bit depth: 16 for a 16-bit camera (8 would quantise its noise)")  # fmt: skip
    s.add_argument("--copies", type=int, default=1, help="noisy versions per clean image (NAME_k)")
    s.add_argument("--seed", type=int, default=0,
                   help="seed of the noise draws (an image's noise depends on it and the image's index)")  # fmt: skip
    s.add_argument("--ray", action="store_true", help="run as a Ray Data job (default for folders over 500 images)")
    s.add_argument("--actors", type=int, default=2, help="model replicas of the Ray Data job")
    add_cluster(s, workers=False)
    add_overrides(s, STORED_SET)
    add_device(s)
    s.set_defaults(func=cmd_synthesize)


def _add_noise_eval(sub) -> None:
    ne = sub.add_parser("noise-eval", help="noise quality of a SeNM-VAE beside fitted baselines (Table 1 columns)")
    ne.add_argument("checkpoint", help="a SeNM-VAE: " + CHECKPOINT_HELP)
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
    add_overrides(ne, STORED_SET)
    add_device(ne)
    ne.set_defaults(func=cmd_noise_eval)


def cmd_synthesize(args: argparse.Namespace) -> int:
    from raytrain.data.images import list_images, load_collection
    from raytrain.errors import DataError
    from raytrain.locations import display
    from raytrain.synthesis import VAESource, actor_gpus, write_pairs, write_pairs_ray

    if args.copies < 1:
        raise DataError(f"--copies must be >= 1 (got {args.copies})")
    kw = {"mode": args.mode, "content": args.content, "normalize": args.normalize,
          "allow_content_floor": args.allow_content_floor, "overrides": args.overrides}  # fmt: skip
    files = list_images(args.clean) if args.clean != "samples" else []
    ray_job = args.ray or len(files) > 500
    src = VAESource(args.checkpoint, args.level, args.temperature, args.seed, "cpu" if ray_job else args.device, **kw)
    if ray_job:
        if not files:
            raise DataError(f"{args.clean}: --ray needs a folder of images (local, mounted on every node, or a URI)")
        import ray

        from raytrain.console import quiet_ray_data

        quiet_ray_data()  # this driver runs the Ray Data job: its executor's progress lines only when verbose
        if args.address:
            from raytrain.console import ray_init_kwargs

            ray.init(address=args.address, **ray_init_kwargs())
        else:
            from raytrain import localray

            localray.start(max(2, args.actors))
        out = write_pairs_ray(files, args.checkpoint, args.out, args.level, args.temperature, args.seed, args.copies,
                              args.actors, actor_gpus(args.device), args.bits, **kw)  # fmt: skip
    else:
        images = load_collection(args.clean, src.color, None)
        out = write_pairs(images, src, args.out, args.copies, describe=src.describe(), bits=args.bits)
    d = src.describe()
    level = d["level"] if d["level"] == "prior" else f"{d['level']:g}"
    print(f"wrote synthetic pairs to {display(out)} ({d['mode']} synthesis, level {level}, trained range "
          f"{d['trained_level_range']}, temperature {d['temperature']:.3g}); train on them with "
          f"--set data.synthetic={out}")  # fmt: skip
    return 0


def cmd_noise_eval(args: argparse.Namespace) -> int:
    from raytrain.noise_eval import noise_eval, report

    res = noise_eval(args.checkpoint, args.data, args.noisy, args.crop, not args.no_baselines, args.inception,
                     args.fid_patch, tuple(args.denoiser), args.device, args.overrides)  # fmt: skip
    print(report(res))
    return 0


def cmd_pipeline(args: argparse.Namespace) -> int:
    from raytrain.config import load_config
    from raytrain.locations import display
    from raytrain.noise_pipeline import run_pipeline
    from raytrain.pipeline_report import markdown
    from raytrain.tracking import resolve_uri

    cfg = load_config(args.config, cluster_overrides(args))
    if args.dry_run:
        return print_resolved(cfg)
    res = run_pipeline(cfg)
    print(f"\npipeline {cfg.name}: {res.wall_s / 60:.1f} min\n")
    print(markdown(res, cfg))
    print(f"\ntables and run ids: {display(res.out.where())}")
    if res.parent_run_id:
        uri = resolve_uri(cfg.tracking.uri, cfg.workdir)
        see = f"mlflow ui --backend-store-uri {uri} --host 127.0.0.1" if uri.startswith("sqlite") else uri
        print(f"MLflow parent run {res.parent_run_id}: {see}")
    res.out.close()
    return 0
