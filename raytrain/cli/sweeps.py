"""``raytrain`` subcommands. Searches and grids: tune (Ray Tune + Optuna), ablate."""

from __future__ import annotations

import argparse

from raytrain.cli.common import add_cluster, add_dry_run, add_overrides, cluster_overrides, print_resolved


def add_parsers(sub) -> None:
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
    tu.add_argument("--sampler-seed", type=int, help="the Optuna sampler's seed (default: the config's seed)")
    add_overrides(tu)
    add_cluster(tu)
    add_dry_run(tu)
    tu.set_defaults(func=cmd_tune)

    ab = sub.add_parser("ablate", help="a grid x method variants; mean ± std tables (Markdown, CSV) and plots")
    ab.add_argument("config", help="the base run config")
    ab.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="a grid axis, e.g. --grid data.paired.count=10,96,960 --grid seed=0,1,2 (repeatable)",
    )
    ab.add_argument("--variants", help="comma-separated ablation variants of the method (e.g. full,no_bcm)")
    ab.add_argument("--metric", help="validation metric of the table (default: the method's headline)")
    ab.add_argument("--concurrent", type=int, default=1, help="runs at once (checked against the CPUs/GPUs)")
    ab.add_argument("--name", help="ablation name (default: <config name>-ablate)")
    ab.add_argument("--resume", action="store_true", help="continue an interrupted ablation of the same name")
    add_overrides(ab)
    add_cluster(ab)
    add_dry_run(ab)
    ab.set_defaults(func=cmd_ablate)


def _headline(cfg) -> tuple[str, str]:
    from raytrain.methods import method_class

    key, _, mode = method_class(cfg.method.name).headline
    return f"val_{key}", mode


def cmd_tune(args: argparse.Namespace) -> int:
    from raytrain.config import check_name, load_config
    from raytrain.tune.driver import run_sweep
    from raytrain.tune.space import load_space

    cfg = load_config(args.config, cluster_overrides(args))
    space = load_space(args.space)
    if args.dry_run:
        return print_resolved(cfg)
    default_metric, default_mode = _headline(cfg)
    metrics = (args.metric or space.metric or default_metric).split(",")
    modes = (args.mode or space.mode or (default_mode if metrics == [default_metric] else "max")).split(",")
    if len(modes) == 1 and len(metrics) > 1:
        modes = modes * len(metrics)
    name = check_name(args.name or f"{cfg.name}-sweep", "--name")
    res = run_sweep(cfg, space, name, args.samples, args.concurrent, metrics, modes,
                    None if args.scheduler == "fifo" else args.scheduler, "optuna", args.resume,
                    args.sampler_seed)  # fmt: skip
    cols = list(space.params) + metrics + ["startup_s"]
    print(f"\nsweep {name}: {len(res.rows)} trials in {res.wall_s:.0f} s")
    from raytrain.locations import display, is_uri
    from raytrain.tables import markdown_table

    cell = lambda r, c: f"{r[c]:.4g}" if isinstance(r.get(c), float) else str(r.get(c, "–"))  # noqa: E731
    rows = [[r["trial_id"], r["status"], *(cell(r, c) for c in cols)] for r in res.rows]
    print("\n".join(markdown_table(["trial", "status", *cols], rows)))
    ups = [r["startup_s"] for r in res.rows if isinstance(r.get("startup_s"), float)]
    if ups:
        print(f"per-trial overhead (trial start -> first training step): mean {sum(ups) / len(ups):.1f} s, "
              f"max {max(ups):.1f} s")  # fmt: skip
    if res.best_config:
        where = display(res.folder.where("best_config.yaml"))
        print(f"best by {metrics[0]}: {res.best[metrics[0]]:.4f}; config: {where}"
              + ("" if is_uri(where) else f"  (raytrain train {where})"))  # fmt: skip
    if res.parent_run_id:
        print(f"MLflow parent run {res.parent_run_id}")
    return 0


def cmd_ablate(args: argparse.Namespace) -> int:
    from raytrain.config import check_name, load_config
    from raytrain.tune.ablate import parse_grid, run_ablation

    cfg = load_config(args.config, cluster_overrides(args))
    if args.dry_run:
        return print_resolved(cfg)
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
