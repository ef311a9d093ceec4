"""The `raftkv` dispatcher: its table of commands, what it imports, its usage errors."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from api.cli import COMMANDS, build_parser


def listed_commands(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Command -> help line, as `raftkv --help` shows them."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {choice.dest: choice.help for choice in sub._choices_actions}


def run_cli(*code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "\n".join(code)], capture_output=True, text=True, timeout=60)


def test_cli_table_matches_what_each_command_module_registers():
    assert listed_commands(build_parser()) == {name: help_line for name, (_, help_line) in COMMANDS.items()}
    assert listed_commands(build_parser([])) == listed_commands(build_parser())


def test_cli_imports_only_the_module_of_the_command_it_runs():
    r = run_cli("import json, sys",
                "from api import cli",
                "for argv in (['--help'], ['snapshot', '--help']):",
                "    try:",
                "        cli.main(argv)",
                "    except SystemExit:",
                "        pass",
                "ours = [m for m in sys.modules if m.split('.')[0] in ('api', 'snapshots', 'loadtest')]",
                "print(json.dumps(sorted(ours)))")
    assert r.returncode == 0, r.stderr
    loaded = json.loads(r.stdout.strip().splitlines()[-1])
    assert "api.snapshot_cli" in loaded
    for module, _ in COMMANDS.values():
        if module != "api.snapshot_cli":
            assert module not in loaded
    assert not [m for m in loaded if m.startswith("loadtest")]


def test_cli_usage_errors_are_one_line_with_status_2():
    for argv in (["bogus"], ["chaos", "--schedule", "nope"], ["kv"]):
        r = subprocess.run([sys.executable, "-m", "api.cli", *argv], capture_output=True, text=True, timeout=60)
        assert r.returncode == 2
        assert r.stderr.startswith("raftkv") and r.stderr.endswith("(see --help)\n") and r.stderr.count("\n") == 1
