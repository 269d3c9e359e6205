"""``raytrain`` subcommands. Commands that train and use models: train, eval, denoise, dnd."""

from __future__ import annotations

import argparse
from pathlib import Path

from raytrain.cli.common import add_cluster, add_device, add_dry_run, add_overrides, cluster_overrides, print_resolved

CHECKPOINT_HELP = ("checkpoint folder, run folder (its best checkpoint) or model.pt, local or at a URI "
                   "(s3://bucket/runs/NAME), or an MLflow model: runs:/RUN_ID/model, models:/NAME/VERSION")  # fmt: skip
STORED_SET = "override the checkpoint's stored config, e.g. --set data.color=gray (repeatable)"


def add_parsers(sub) -> None:
    t = sub.add_parser("train", help="train a method on Ray Train (embedded local Ray unless --address)")
    t.add_argument("config", nargs="?", help="YAML config (omit for the embedded defaults)")
    add_overrides(t, "override a config value, e.g. --set train.steps=100 (repeatable)")
    add_cluster(t)
    add_dry_run(t)
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="PSNR/SSIM table of a checkpoint on a set of images")
    e.add_argument("checkpoint", help=CHECKPOINT_HELP)
    e.add_argument(
        "--data",
        help="clean images: a folder, a URI or 'samples' (default: the run's held-out "
        "validation images, rebuilt from the config stored in the checkpoint)",
    )
    e.add_argument("--noisy", help="folder of real noisy images with the same names (else the run's noise model)")
    add_overrides(e, "override the checkpoint's data config, e.g. --set data.noise.sigma=50")
    e.add_argument("--crop", type=int, help="evaluate a centre crop of this size (LR pixels for an SR model)")
    e.add_argument("--max-size", type=int, help="shrink --data images to this longer side (default: score as given)")
    e.add_argument("--tile", type=int, default=512, help="restore larger images in overlapping tiles of this size")
    add_device(e)
    e.set_defaults(func=cmd_eval)

    d = sub.add_parser("denoise", help="restore an image or a folder of images with a checkpoint")
    d.add_argument("checkpoint", help=CHECKPOINT_HELP)
    d.add_argument("input", help="image file or folder")
    d.add_argument("output", help="output file (for a file input) or folder")
    d.add_argument("--level", type=float, metavar="SIGMA",
                   help="a noise-level-map DRUNet (method.noise_map): the noise std on the 0..255 scale (default: "
                        "estimated per image with scikit-image's wavelet estimator)")  # fmt: skip
    d.add_argument("--tile", type=int, default=512, help="restore larger images in overlapping tiles of this size")
    add_overrides(d, STORED_SET)
    add_device(d)
    d.set_defaults(func=cmd_denoise)

    ex = sub.add_parser("export", help="write a trained denoiser as TorchScript or ONNX for use outside raytrain, "
                                       "checked against the eager model on a test image")  # fmt: skip
    ex.add_argument("checkpoint", help=CHECKPOINT_HELP)
    ex.add_argument("--format", choices=["torchscript", "onnx"], default="torchscript",
                    help="torchscript (torch.jit.trace; load with torch.jit.load) or onnx (dynamic batch and size; "
                         "needs pip install 'raytrain[export]')")  # fmt: skip
    ex.add_argument("--out", required=True, help="the file to write (FILE.json beside it says what the model takes)")
    add_overrides(ex, STORED_SET)
    ex.set_defaults(func=cmd_export)

    dnd = sub.add_parser("dnd", help="denoise the DND sRGB benchmark into its submission layout (OUT/bundled/*.mat)")
    dnd.add_argument("checkpoint", help="an RGB restoration checkpoint (" + CHECKPOINT_HELP + ")")
    dnd.add_argument("dnd", help="the DND folder (info.mat, images_srgb/)")
    dnd.add_argument("--out", required=True, help="a new folder for the submission")
    add_overrides(dnd, STORED_SET)
    add_device(dnd)
    dnd.set_defaults(func=cmd_dnd)


def cmd_train(args: argparse.Namespace) -> int:
    from raytrain.config import load_config

    cfg = load_config(args.config, cluster_overrides(args))
    if args.dry_run:
        return print_resolved(cfg)
    from raytrain.locations import display
    from raytrain.tracking import resolve_uri
    from raytrain.train.launch import run_training

    res = run_training(cfg)
    m = res.metrics
    print(f"\nrun {cfg.name}: {int(m.get('step', 0))} steps, method {cfg.method.name}")
    if "val_psnr" in m:
        print(f"  validation PSNR {m['val_psnr']:.2f} dB (noisy input {m['val_psnr_noisy']:.2f} dB), "
              f"SSIM {m['val_ssim']:.4f} (noisy {m['val_ssim_noisy']:.4f})")  # fmt: skip
    print(
        f"  checkpoint: {display(res.checkpoint) if res.checkpoint else None}" + (f" ({res.pick})" if res.pick else "")
    )
    if res.last_checkpoint and res.last_checkpoint != res.checkpoint:
        print(f"  newest checkpoint (what a resume uses): {display(res.last_checkpoint)}")
    if res.run_id:
        uri = resolve_uri(cfg.tracking.uri, cfg.workdir)
        print(f"  MLflow run {res.run_id} in {uri}")
        if uri.startswith("sqlite"):
            print(f"  view it: mlflow ui --backend-store-uri {uri} --host 127.0.0.1")
        store = "" if uri == resolve_uri(None, "runs") else f" --tracking-uri {uri}"
        print(f"  curves: raytrain curves {res.run_id}{store} --out {cfg.name}_curves.png")


def cmd_eval(args: argparse.Namespace) -> int:
    from raytrain.data.collection import data_scale, split_seed
    from raytrain.data.degrade import noise_model, rng_for
    from raytrain.data.images import load_collection, load_pairs
    from raytrain.data.resize import bicubic_down, centre_crop_pair, mod_crop
    from raytrain.evaluate import evaluate_pairs, tiled
    from raytrain.inference import load_restorer, on_device, resolve_device
    from raytrain.metrics import format_mean_std

    device = resolve_device(args.device)
    cfg, method = load_restorer(args.checkpoint, device, args.overrides)
    color, scale = cfg.data.color, data_scale(cfg.data)  # an SR model's pairs are (HR, LR)
    if args.data is None:
        from raytrain.data.collection import load_domains

        col = load_domains(cfg)
        pairs = col.val
        names = col.val_names
        print(f"held-out validation images of the run (split seed {split_seed(cfg)}): {', '.join(names)}")
    elif args.noisy:
        real = load_pairs(args.data, args.noisy, color, scale)
        pairs = [(c.pixels, n.pixels) for c, n in real]
        names = [c.name for c, _ in real]
    else:
        model = noise_model(cfg.data.noise)
        imgs = load_collection(args.data, color, args.max_size)  # as given (the run's max_size is for training)
        hr = [mod_crop(im.pixels, scale) for im in imgs]
        pairs = [(c, model(bicubic_down(c, scale), rng_for(split_seed(cfg), 0, i))) for i, c in enumerate(hr)]
        names = [im.name for im in imgs]
    pairs = [centre_crop_pair(clean, noisy, args.crop, scale) for clean, noisy in pairs]
    rows = evaluate_pairs(tiled(on_device(method.restore, device), args.tile), pairs)
    w = max(len(n) for n in names)
    print(f"{'image':<{w}}  {'PSNR noisy':>10}  {'PSNR':>7}  {'SSIM noisy':>10}  {'SSIM':>7}")
    for n, r in zip(names, rows, strict=True):
        print(f"{n:<{w}}  {r['psnr_noisy']:>10.2f}  {r['psnr']:>7.2f}  {r['ssim_noisy']:>10.4f}  {r['ssim']:>7.4f}")
    for k in ("psnr_noisy", "psnr", "ssim_noisy", "ssim"):
        print(f"mean ± std {k}: {format_mean_std([r[k] for r in rows], 4 if 'ssim' in k else 2)}")
    return 0


def cmd_denoise(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from raytrain.data.images import EXTENSIONS, list_images, read_image, stem, to_uint8
    from raytrain.errors import DataError
    from raytrain.evaluate import tiled
    from raytrain.files import atomic_write_bytes, make_dirs
    from raytrain.inference import load_restorer, on_device, resolve_device
    from raytrain.layout import to_image, to_tensor

    device = resolve_device(args.device)
    cfg, method = load_restorer(args.checkpoint, device, args.overrides)
    if args.level is not None:
        if not getattr(method, "noise_map", False):
            raise DataError(f"--level: {args.checkpoint} is not a noise-level-map model (method.noise_map); it "
                            "estimates nothing and takes no level")  # fmt: skip
        if not 0 < args.level <= 255:
            raise DataError(f"--level {args.level:g}: expected a noise std in (0, 255]")
        method.level = args.level / 255.0
    restore = tiled(on_device(method.restore, device), args.tile)
    src, dst = Path(args.input), Path(args.output)
    if src.is_dir():
        jobs = [(f, dst / (stem(f) + ".png")) for f in list_images(src)]
        make_dirs(dst)
    elif src.is_file():
        if dst.suffix.lower() not in EXTENSIONS:
            raise DataError(f"{dst}: output must end in one of {', '.join(EXTENSIONS)}")
        make_dirs(dst.parent)
        jobs = [(src, dst)]
    else:
        raise DataError(f"{src}: no such file or folder")
    import imageio.v3 as iio

    for f, out in tqdm(jobs, desc="denoise", unit="img", disable=True if len(jobs) < 2 else None):
        img = read_image(f, cfg.data.color)
        y = to_image(restore(to_tensor(img)).clamp(0, 1))
        atomic_write_bytes(iio.imwrite("<bytes>", to_uint8(y), extension=out.suffix.lower()), out)
    print(f"wrote {len(jobs)} image(s) to {dst}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from raytrain.export import TOLERANCE, export
    from raytrain.inference import load_restorer

    cfg, method = load_restorer(args.checkpoint, "cpu", args.overrides)
    facts = export(method, cfg, args.format, args.out)
    print(f"wrote {args.out} ({args.format}, {method.name}): input {' + '.join(facts['inputs'])}, NCHW float32 in "
          f"[0, 1], {facts['channels']} channel(s), sides divisible by {facts['sides_divide_by']}")  # fmt: skip
    print(f"  checked against the eager model on a {'x'.join(map(str, facts['checked_on']))} test image: max abs "
          f"difference {facts['max_abs_diff']:.1e} (limit {TOLERANCE:g}); facts in {args.out}.json")  # fmt: skip
    return 0


def cmd_dnd(args: argparse.Namespace) -> int:
    from raytrain.errors import ConfigError
    from raytrain.inference import load_restorer, on_device, resolve_device
    from raytrain.submission import dnd_submission

    device = resolve_device(args.device)
    cfg, method = load_restorer(args.checkpoint, device, args.overrides)
    if cfg.data.color != "rgb":
        raise ConfigError(f"{args.checkpoint}: a {cfg.data.color} model (data.color); DND's crops are RGB")
    n = dnd_submission(on_device(method.restore, device), args.dnd, args.out)
    print(f"wrote {n} image(s) of denoised crops to {Path(args.out) / 'bundled'} (submit that folder's files)")
    return 0
