"""The `raftkv` command: a thin dispatcher. Each subcommand lives with the package it drives;
its module exposes `register(subparsers)`, which adds the subcommand and sets `_run`."""

from __future__ import annotations

import argparse
import importlib
import sys

# Looked up by name so that the packages below `api` (loadtest) can add commands without
# `api` importing them at module level.
COMMAND_MODULES = [
    "api.serve", "api.up", "api.client_cli", "api.members_cli", "snapshots.cli",
    "loadtest.locustfiles.locust_run", "loadtest.bench.sweep", "loadtest.chaos.experiment",
]


class OneLineParser(argparse.ArgumentParser):
    """Usage errors in one line (argparse prints the usage block too), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="raftkv", description="A Raft-replicated key-value store.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return args._run(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
