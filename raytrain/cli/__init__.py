"""The ``raytrain`` console script: the root parser, the embedded-Ray decision and the error handling; the
subcommands live in one module per group (runs, noise, sweeps, cluster, misc), each adding its parsers with their
handlers.

One grammar for every command: the global flags (``--debug``, ``--verbose``) go before or after the subcommand; a
command that reads a config takes ``--set KEY=VALUE``; ``--address`` is always a Ray address, ``--dashboard`` the
Ray Jobs URL; ``--device`` picks the inference device. Exit codes: 0 done, 1 a raytrain error (one line on stderr,
``raytrain: error: ...``; ``--debug`` shows the traceback), 2 a usage error (argparse's), 130 interrupted.
Heavy imports (Ray, MLflow, torch) happen inside the commands so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import os
import sys

from raytrain.cli import cluster, misc, noise, runs, sweeps

GROUPS = (runs, noise, sweeps, cluster, misc)


EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


class Parser(argparse.ArgumentParser):
    """Every (sub)command's parser: the global flags are accepted at any level (before or after the subcommand);
    their default is set once, on the root, so a flag given before the subcommand is not reset by the subparser."""

    def __init__(self, *args, root: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        default = False if root else argparse.SUPPRESS
        self.add_argument("--debug", action="store_true", default=default, help="show full tracebacks")
        self.add_argument("--verbose", action="store_true", default=default,
                          help="show Ray's and MLflow's own output too (worker and actor logs, start-up "
                               "notices)")  # fmt: skip


def _version() -> str:
    from raytrain import __version__

    return f"raytrain {__version__}"


def _parser() -> argparse.ArgumentParser:
    p = Parser(prog="raytrain", description="Train and tune image-restoration models on Ray.", root=True,
               epilog="A checkpoint (CKPT) is a checkpoint folder, a run's folder (its best checkpoint), a model.pt, "
                      "local or at a URI, or an MLflow model (runs:/RUN_ID/model, models:/NAME/VERSION; the store: "
                      "MLFLOW_TRACKING_URI). Exit codes: 0 done, 1 a raytrain error, 2 a usage error, 130 "
                      "interrupted. `raytrain COMMAND --help` for a command's arguments.")  # fmt: skip
    p.add_argument("--version", action="version", version=_version(), help="print the version and exit")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND")
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
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("raytrain: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
