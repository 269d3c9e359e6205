"""What every ``raytrain`` subcommand module shares: the arguments that mean the same thing on every command."""

from __future__ import annotations

import argparse


def add_overrides(parser: argparse.ArgumentParser, help: str = "override a config value (repeatable)") -> None:
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help)


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", metavar="auto|cpu|cuda[:N]",
                        help="where the model runs: auto (a CUDA GPU when torch sees one, else the CPU), cpu, cuda or "
                             "cuda:N (default: auto)")  # fmt: skip


def add_cluster(parser: argparse.ArgumentParser, workers: bool = True) -> None:
    """``--address`` (a Ray address, on every command that starts Ray) and ``--num-workers``."""
    parser.add_argument("--address", help="the Ray cluster's address (ray://HEAD:10001 or auto; default: RAY_ADDRESS, "
                        "the config's address, else an embedded local Ray on 127.0.0.1)")  # fmt: skip
    if workers:
        parser.add_argument("--num-workers", type=int, metavar="N",
                            help="Ray Train workers per run (same as --set scaling.num_workers=N)")  # fmt: skip


def add_dry_run(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true",
                        help="validate the config and print it resolved (YAML, every default filled in); start "
                             "nothing")  # fmt: skip


def cluster_overrides(args: argparse.Namespace) -> list[str]:
    """``--set`` items plus what ``--address`` and ``--num-workers`` mean in config terms."""
    out = list(getattr(args, "overrides", []))
    if getattr(args, "address", None):
        out.append(f"address={args.address}")
    if getattr(args, "num_workers", None) is not None:
        out.append(f"scaling.num_workers={args.num_workers}")
    return out


def print_resolved(cfg) -> int:
    """``--dry-run``: the config as the run would use it, every default filled in, as YAML."""
    from raytrain.config import resolved_yaml

    print("# the resolved config: every value this run would use (the keys you set, then the defaults)")
    print(resolved_yaml(cfg), end="")
    return 0
