"""The `raftkv` command: a thin dispatcher. Each subcommand lives with the package it drives;
its module exposes `register(subparsers)`, which adds the subcommand and sets `_run`.

Only the chosen subcommand's module is imported: a served node must not load the load-test
code (or anything else it does not run). The other commands are listed by name and one-line
help; `build_parser()` with no argument imports them all (the tests parse every command)."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Iterable

# Command -> (the module that registers it, its one-line help). Looked up by name so that the
# packages below `api` (loadtest) can add commands without `api` importing them; the help
# lines must match what the modules register (tests/unit/test_cli.py checks).
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("api.serve", "run one node"),
    "up": ("api.up", "run a local cluster in one command"),
    "kv": ("api.client_cli", "get, put, delete and list keys"),
    "status": ("api.status_cli", "show the cluster's nodes, leader and indexes"),
    "members": ("api.members_cli", "list, add and remove cluster members"),
    "leader": ("api.members_cli", "hand leadership over"),
    "snapshot": ("api.snapshot_cli", "save, inspect and restore snapshots"),
    "acl": ("api.acl.cli", "manage ACL tokens and policies"),
    "session": ("api.session_cli", "create, list, inspect and destroy sessions"),
    "lock": ("api.lock_cli", "run a command while holding a lock (as consul lock)"),
    "loadtest": ("loadtest.locustfiles.locust_run", "run a locust scenario against a local (or given) cluster"),
    "bench": ("loadtest.bench.sweep", "closed-loop HTTP benchmark with a concurrency sweep"),
    "chaos": ("loadtest.chaos.experiment", "kill and pause nodes under load, then check what the cluster did"),
}


class OneLineParser(argparse.ArgumentParser):
    """Usage errors in one line (argparse prints the usage block too), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def build_parser(commands: Iterable[str] = COMMANDS) -> argparse.ArgumentParser:
    """The parser with `commands` registered by their modules (by default all of them); every
    other command is listed by name and help only, its module not imported."""
    parser = OneLineParser(prog="raftkv", description="A Raft-replicated key-value store.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = {COMMANDS[name][0] for name in commands}
    registered: set[str] = set()
    for name, (module, help_line) in COMMANDS.items():
        if module not in wanted:
            sub.add_parser(name, help=help_line)
        elif module not in registered:  # one module may register several commands (kv and status)
            importlib.import_module(module).register(sub)
            registered.add(module)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Only the command asked for is imported; with none (--help, a typo) none is.
    parser = build_parser([argv[0]] if argv and argv[0] in COMMANDS else [])
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    args._argv = argv[1:]  # the command's own arguments: serve tells flags given from defaults (api/config.py)
    try:
        return args._run(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
