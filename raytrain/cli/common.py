"""What every ``raytrain`` subcommand module shares."""

from __future__ import annotations

import argparse


def add_overrides(parser: argparse.ArgumentParser, help: str = "override a config value (repeatable)") -> None:
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help)
