"""The ``raytrain`` console script. Nothing imports this module.

Every user error ends as one line on stderr (``raytrain: error: ...``) and exit code 2; ``--debug`` shows the
traceback. Heavy imports (Ray, MLflow, torch) happen inside the commands so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="raytrain", description="Train and tune image-restoration models on Ray.")
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a method on Ray Train (embedded local Ray unless --address)")
    t.add_argument("config", nargs="?", help="YAML config (omit for the embedded defaults)")
    t.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.steps=100 (repeatable)",
    )
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
    e.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override the checkpoint's data config, e.g. --set data.noise.sigma=50",
    )
    e.add_argument("--crop", type=int, help="evaluate a centre crop of this size")

    d = sub.add_parser("denoise", help="restore an image or a folder of images with a checkpoint")
    d.add_argument("checkpoint")
    d.add_argument("input", help="image file or folder")
    d.add_argument("output", help="output file (for a file input) or folder")

    data = sub.add_parser("data", help="inspect the data a config produces")
    dsub = data.add_subparsers(dest="data_command", required=True)
    pv = dsub.add_parser("preview", help="write a grid of sample patches of each domain")
    pv.add_argument("config", nargs="?")
    pv.add_argument("--out", required=True, help="PNG file to write")
    pv.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
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


def _load_restorer(checkpoint: str, device: str = "cpu"):
    """(cfg, method) for inference from any checkpoint form."""
    import json

    import torch

    from raytrain.config import validate
    from raytrain.methods import build_method
    from raytrain.train.checkpoint import load_inference

    payload = load_inference(checkpoint)
    cfg = validate(json.loads(payload["config"]), f"{checkpoint} (stored config)")
    method = build_method(cfg, torch.device(device), inference=True)
    for k in method.inference_nets:
        method.nets[k].load_state_dict(payload["nets"][k])
    method.train(False)
    return cfg, method


def cmd_eval(args: argparse.Namespace) -> int:
    from raytrain.config import apply_overrides, to_raw, validate
    from raytrain.data.degrade import noise_model, rng_for
    from raytrain.data.images import load_collection, load_pairs
    from raytrain.data.pipeline import centre_crop, chw
    from raytrain.evaluate import evaluate_pairs
    from raytrain.metrics import format_mean_std

    cfg, method = _load_restorer(args.checkpoint)
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
        imgs = load_collection(args.data, color, cfg.data.max_size)
        pairs = [(model(im.pixels, rng_for(cfg.seed, 0, i)), im.pixels) for i, im in enumerate(imgs)]
        names = [im.name for im in imgs]
    pairs = [(chw(centre_crop(n, args.crop)), chw(centre_crop(c, args.crop))) for n, c in pairs]
    rows = evaluate_pairs(method.restore, pairs)
    w = max(len(n) for n in names)
    print(f"{'image':<{w}}  {'PSNR noisy':>10}  {'PSNR':>7}  {'SSIM noisy':>10}  {'SSIM':>7}")
    for n, r in zip(names, rows, strict=True):
        print(f"{n:<{w}}  {r['psnr_noisy']:>10.2f}  {r['psnr']:>7.2f}  {r['ssim_noisy']:>10.4f}  {r['ssim']:>7.4f}")
    for k in ("psnr_noisy", "psnr", "ssim_noisy", "ssim"):
        print(f"mean ± std {k}: {format_mean_std([r[k] for r in rows], 4 if 'ssim' in k else 2)}")
    return 0


def cmd_denoise(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm import tqdm

    from raytrain.data.images import EXTENSIONS, list_images, read_image
    from raytrain.errors import DataError
    from raytrain.evaluate import to_tensor
    from raytrain.train.checkpoint import atomic_write_bytes

    cfg, method = _load_restorer(args.checkpoint)
    src, dst = Path(args.input), Path(args.output)
    if src.is_dir():
        jobs = [(f, dst / (f.stem + ".png")) for f in list_images(src)]
        dst.mkdir(parents=True, exist_ok=True)
    elif src.is_file():
        if dst.suffix.lower() not in EXTENSIONS:
            raise DataError(f"{dst}: output must end in one of {', '.join(EXTENSIONS)}")
        dst.parent.mkdir(parents=True, exist_ok=True)
        jobs = [(src, dst)]
    else:
        raise DataError(f"{src}: no such file or folder")
    import imageio.v3 as iio

    for f, out in tqdm(jobs, desc="denoise", unit="img", disable=len(jobs) < 2):
        img = read_image(f, cfg.data.color)
        x = to_tensor(img.transpose(2, 0, 1))
        y = method.restore(x).clamp(0, 1)[0].numpy().transpose(1, 2, 0)
        arr = np.round(y * 255).astype(np.uint8)
        arr = arr[..., 0] if arr.shape[-1] == 1 else arr
        atomic_write_bytes(iio.imwrite("<bytes>", arr, extension=out.suffix.lower()), out)
    print(f"wrote {len(jobs)} image(s) to {dst}")
    return 0


def cmd_preview(args: argparse.Namespace) -> int:
    from raytrain.config import load_config
    from raytrain.data.preview import write_preview

    cfg = load_config(args.config, args.overrides)
    out = write_preview(cfg, Path(args.out), args.per_domain)
    print(f"wrote {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from raytrain.errors import RaytrainError

    handlers = {"train": cmd_train, "eval": cmd_eval, "denoise": cmd_denoise, "data": cmd_preview}
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
