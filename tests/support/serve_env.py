"""`raftkv serve` configured by environment, as the Docker and Kubernetes files configure it.

serve takes each flag `--some-flag` as the variable RAFTKV_SOME_FLAG too (booleans as
true/false, lists comma-separated; README "Configuration"): `serve_argv` turns the variables a
file sets into that command line, which the real parser must accept.
"""

from __future__ import annotations

import functools

from api.cli import build_parser

# RAFTKV_* variables in docker/ that are not serve flags, and the file that reads each
NOT_SERVE_FLAGS = {"RAFTKV_NODES": "loadtest/locustfiles/locustfile.py",
                   "RAFTKV_SCENARIO": "loadtest/locustfiles/locustfile.py",
                   "RAFTKV_HTTP_TOKEN": "api/cli_http.py"}  # the CLI's ACL token: docker/k8s/prestop.py


def flag_of(var: str) -> str:
    return "--" + var.removeprefix("RAFTKV_").lower().replace("_", "-")


@functools.cache
def serve_parser():
    return build_parser(["serve"])


def serve_flags() -> dict:
    """serve's options, by flag."""
    parser = serve_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return {opt: action for action in sub.choices["serve"]._actions for opt in action.option_strings}


def serve_argv(env: dict[str, str]) -> list[str]:
    """`raftkv serve` with the flags the RAFTKV_* variables of `env` stand for."""
    flags = serve_flags()
    argv = ["serve"]
    for var, value in env.items():
        if not var.startswith("RAFTKV_") or var in NOT_SERVE_FLAGS:
            continue
        flag = flag_of(var)
        assert flag in flags, f"{var} names no `raftkv serve` flag ({flag})"
        if flags[flag].nargs == 0:  # a switch
            assert value in ("true", "false"), f"{var}={value!r}: a boolean is true or false"
            argv += [flag] if value == "true" else []
        else:
            argv += [flag, value]
    return argv


def parse_serve(env: dict[str, str]):
    args = serve_parser().parse_args(serve_argv(env))  # exits 2 on a flag it does not take
    assert args.command == "serve"
    return args
