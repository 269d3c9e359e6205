"""The ``raytrain`` console script: the root parser, the embedded-Ray decision and the error handling; the
subcommands live in one module per group (runs, noise, sweeps, cluster, misc), each adding its parsers with their
handlers.

Every user error ends as one line on stderr (``raytrain: error: ...``) and exit code 2; ``--debug`` shows the
traceback. Heavy imports (Ray, MLflow, torch) happen inside the commands so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import os
import sys

from raytrain.cli import cluster, misc, noise, runs, sweeps

GROUPS = (runs, noise, sweeps, cluster, misc)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="raytrain", description="Train and tune image-restoration models on Ray.")
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    p.add_argument("--verbose", action="store_true",
                   help="show Ray's and MLflow's own output too (worker and actor logs, start-up notices)")  # fmt: skip
    sub = p.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.add_parsers(sub)
    return p


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

    try:
        return args.func(args)
    except RaytrainError as exc:
        if args.debug:
            raise
        print(f"raytrain: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("raytrain: interrupted", file=sys.stderr)
        return 130
