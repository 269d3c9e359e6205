"""``raytrain`` subcommands. The demo, the configuration reference and the data preview."""

from __future__ import annotations

import argparse
from pathlib import Path

from raytrain.cli.common import add_overrides


def add_parsers(sub) -> None:
    dm = sub.add_parser("demo", help="the main demo: SeNM-VAE -> DnCNN vs the real pairs alone + a short LIR run")
    dm.add_argument("--workdir", default="runs/demo", help="where runs, MLflow (SQLite) and the results go")
    dm.add_argument("--counts", default="10", help="paired tile counts, comma-separated (each a pipeline run)")
    dm.add_argument("--arms", default="senm,real_pairs",
                    help="pipeline arms, comma-separated (also: gaussian, heteroscedastic, all_real)")  # fmt: skip
    dm.add_argument("--quick", action="store_true", help="a few steps per run (a smoke test, not results)")
    add_overrides(dm, "override a value of the SeNM-VAE pipeline runs' config (configs/senm_pipeline.yaml), e.g. "
                      "--set pipeline.downstream.train.steps=600 (repeatable)")  # fmt: skip
    dm.set_defaults(func=cmd_demo)

    cv = sub.add_parser("curves", help="training-loss and validation curves of MLflow runs from their full history")
    cv.add_argument("run_ids", nargs="+", metavar="RUN_ID", help="MLflow run id(s); several are overlaid")
    cv.add_argument("--out", required=True, help="PNG file to write")
    cv.add_argument("--metric", help="the validation metric (default: the first run's headline, e.g. val_psnr)")
    cv.add_argument("--tracking-uri", help="the MLflow store (default: MLFLOW_TRACKING_URI, else ./runs/mlflow.db)")
    cv.set_defaults(func=cmd_curves)

    cr = sub.add_parser("config-reference", help="the configuration reference generated from the typed configs "
                                                 "(Markdown, to stdout or --out)")  # fmt: skip
    cr.add_argument("--out", metavar="FILE", help="write it to FILE (the repository's copy: docs/config.md)")
    cr.set_defaults(func=cmd_reference)

    data = sub.add_parser("data", help="inspect the data a config produces")
    dsub = data.add_subparsers(dest="data_command", required=True)
    pv = dsub.add_parser("preview", help="write a grid of sample patches of each domain")
    pv.add_argument("config", nargs="?", help="YAML config (omit for the embedded defaults)")
    pv.add_argument("--out", required=True, help="PNG file to write")
    add_overrides(pv)
    pv.add_argument("--per-domain", type=int, default=8, help="patches shown per domain (default 8)")
    pv.set_defaults(func=cmd_preview)
    pr = dsub.add_parser("prepare", help="decode every image file under SRC once into a store a run reads without "
                                         "decoding (data.prepared: DST)")  # fmt: skip
    pr.add_argument("src", help="folder of image files (local or a URI), read recursively")
    pr.add_argument("dst", help="the store to write (local or a URI; every node of a cluster must read it)")
    pr.add_argument("--workers", type=int, default=None, help="decoding processes (default: this machine's CPUs)")
    pr.set_defaults(func=cmd_prepare)


def cmd_prepare(args: argparse.Namespace) -> int:
    import time

    from raytrain import locations
    from raytrain.data.prepared import prepare

    t0 = time.time()
    got = prepare(args.src, args.dst, args.workers)
    print(f"prepared {got['files']} files into {locations.display(args.dst)} in {time.time() - t0:.1f} s: "
          f"{got['decoded']} decoded, {got['kept']} unchanged, {got['removed']} removed; "
          f"{got['array_bytes'] / 2**30:.2f} GiB of arrays")  # fmt: skip
    print(f"use it: --set data.prepared={args.dst}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from raytrain.config import DEFAULT_ARMS as ARMS  # the demo denoises: no SR arm
    from raytrain.demo import run_demo
    from raytrain.errors import ConfigError

    try:
        counts = tuple(int(c) for c in args.counts.split(","))
    except ValueError:
        raise ConfigError(f"--counts {args.counts!r}: expected comma-separated whole numbers, e.g. 10,40") from None
    arms = tuple(a.strip() for a in args.arms.split(",") if a.strip())
    if not arms or set(arms) - set(ARMS):
        raise ConfigError(f"--arms {args.arms!r}: expected some of {', '.join(ARMS)}")
    res = run_demo(args.workdir, counts, args.quick, arms, args.overrides)
    print(f"demo finished in {res['wall_s'] / 60:.1f} min")
    return 0


def cmd_curves(args: argparse.Namespace) -> int:
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from raytrain.errors import RaytrainError, first_line
    from raytrain.history import plot_history
    from raytrain.models import tracking_uri

    uri = args.tracking_uri or tracking_uri()
    client = MlflowClient(uri)
    try:
        out = plot_history(client, args.run_ids, args.out, args.metric)
    except MlflowException as exc:
        raise RaytrainError(f"{first_line(exc, 200)} (store {uri})") from None
    print(f"wrote {out}")
    return 0


def cmd_reference(args: argparse.Namespace) -> int:
    from raytrain.files import atomic_write_text, make_dirs
    from raytrain.reference import config_reference

    text = config_reference()
    if args.out is None:
        print(text, end="")
        return 0
    out = Path(args.out)
    make_dirs(out.parent)
    atomic_write_text(text, out)
    print(f"wrote {out}")
    return 0


def cmd_preview(args: argparse.Namespace) -> int:
    from raytrain.config import load_config
    from raytrain.data.preview import write_preview

    cfg = load_config(args.config, args.overrides)
    out = write_preview(cfg, Path(args.out), args.per_domain)
    print(f"wrote {out}")
    return 0
