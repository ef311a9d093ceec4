"""`raftkv serve`'s configuration: flags, RAFTKV_* environment variables and a TOML file.

One naming rule, derived from the serve parser itself (no second list of settings): the flag
`--some-flag` is the TOML key `some_flag` and the environment variable `RAFTKV_SOME_FLAG`.
Precedence: flag > env > file > default. A list flag (`--peers`) takes a TOML array or a
comma-separated string; a boolean flag takes a TOML boolean or true/false/1/0/yes/no.

Everything is checked before anything starts: an unknown key (with the near name), a wrong
type, a value out of range, a missing required setting, an unreadable file or a TOML syntax
error is a `ConfigError` of one line naming the setting and where it came from (the flag, the
environment variable, or FILE:key); `raftkv serve` prints it and exits 2.

Secrets are never settings of their own: the cluster secret and the initial management token
arrive as files (paths are not secrets) or as the environment variables that hold the secret
itself (RAFTKV_CLUSTER_SECRET, RAFTKV_ACL_INITIAL_MANAGEMENT); `render` masks those.
"""

from __future__ import annotations

import argparse
import difflib
import math
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

ENV_PREFIX = "RAFTKV_"
CONFIG_ENV = "RAFTKV_CONFIG"  # the config file, when --config is not given
# Flags that are actions of one run, not configuration: never read from the file or the env.
FLAG_ONLY = frozenset({"config", "print_config", "force_new_cluster"})
# Environment variables that hold a secret itself (not a setting: their flags take a file).
SECRET_ENVS = {"RAFTKV_CLUSTER_SECRET": "cluster secret", "RAFTKV_ACL_INITIAL_MANAGEMENT": "initial management token"}
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")
MASK = "********"


class ConfigError(ValueError):
    """A setting that cannot be used; one line for the user."""


@dataclass(frozen=True)
class Field:
    """One setting, as the serve parser declares its flag."""

    name: str  # the TOML key and the namespace attribute: data_dir
    kind: str  # "str", "int", "float", "bool", "list" (repeated flag) or "csv" (one comma-separated flag)
    default: Any
    choices: tuple | None
    convert: Callable[[str], Any] | None  # the flag's own type= for a str setting (e.g. str.upper)
    required: bool

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()


def fields(parser: argparse.ArgumentParser, required: Iterable[str] = ()) -> dict[str, Field]:
    """Every long option of `parser`, by TOML key."""
    wanted = set(required)
    out: dict[str, Field] = {}
    for action in parser._actions:  # argparse keeps no public list of its actions
        longs = [s for s in action.option_strings if s.startswith("--")]
        if not longs or action.dest == "help":
            continue
        assert longs[0] == "--" + action.dest.replace("_", "-"), f"{longs[0]} breaks the naming rule"
        if isinstance(action, argparse._StoreTrueAction):
            kind = "bool"
        elif isinstance(action, argparse._AppendAction):
            kind = "list"
        elif action.type is int or action.type is float:
            kind = "int" if action.type is int else "float"
        else:
            kind = "csv" if "[," in str(action.metavar or "") else "str"
        convert = action.type if kind == "str" and callable(action.type) else None
        default = list(action.default) if kind == "list" else action.default
        out[action.dest] = Field(action.dest, kind, default, tuple(action.choices) if action.choices else None,
                                 convert, action.dest in wanted)
    return out


@dataclass
class Config:
    """The effective settings (`values`, a namespace like parse_args gives) and each one's source."""

    values: argparse.Namespace
    sources: dict[str, str]  # name -> "flag", "env", "file" or "default"
    file: str | None

    def label(self, name: str) -> str:
        """How the user named this setting: --flag, RAFTKV_NAME, FILE:key, or the flag for a default."""
        source = self.sources.get(name, "default")
        if source == "env":
            return ENV_PREFIX + name.upper()
        if source == "file":
            return f"{self.file}:{name}"
        return "--" + name.replace("_", "-")


def resolve(parser: argparse.ArgumentParser, argv: list[str], environ: Mapping[str, str],
            required: Iterable[str] = ()) -> Config:
    """The configuration from the command line `argv` (serve's arguments), `environ` and the
    file that --config or RAFTKV_CONFIG names. ConfigError with one line."""
    table = fields(parser, required)
    explicit = _explicit_flags(parser, argv)
    path = explicit.get("config") or environ.get(CONFIG_ENV) or None
    from_file = _read_file(path, table) if path else {}
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, f in table.items():
        if name in explicit:
            values[name], sources[name] = _normalise(f, explicit[name]), "flag"
        elif name not in FLAG_ONLY and environ.get(f.env, "") != "":
            values[name], sources[name] = _from_env(f, environ[f.env]), "env"
        elif name in from_file:
            values[name], sources[name] = from_file[name], "file"
        else:
            values[name], sources[name] = f.default, "default"
    config = Config(argparse.Namespace(**values), sources, path)
    _check(config, table)
    return config


def _explicit_flags(parser: argparse.ArgumentParser, argv: list[str]) -> dict[str, Any]:
    """The options given on the command line, parsed with every default left out."""
    saved = [(action, action.default) for action in parser._actions]
    try:
        for action, _ in saved:
            action.default = argparse.SUPPRESS
        return {k: v for k, v in vars(parser.parse_args(argv)).items() if not k.startswith("_")}
    finally:
        for action, default in saved:
            action.default = default


def _read_file(path: str, table: dict[str, Field]) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            document = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    out = {}
    for key, value in document.items():
        where = f"{path}:{key}"
        if key not in table:
            raise ConfigError(f"{where}: unknown key{_did_you_mean(key, table)}")
        if key in FLAG_ONLY:
            raise ConfigError(f"{where}: only a flag ({table[key].flag}), not a configuration key")
        out[key] = _from_toml(table[key], value, where)
    return out


def _did_you_mean(key: str, table: dict[str, Field]) -> str:
    names = [n for n in table if n not in FLAG_ONLY]
    near = difflib.get_close_matches(key.replace("-", "_").lower(), names, n=1, cutoff=0.6)
    return f" (did you mean {near[0]!r}?)" if near else f" (known keys: {', '.join(sorted(names))})"


_TYPE_WORDS = {"str": "a string", "int": "an integer", "float": "a number", "bool": "a boolean (true or false)",
               "list": "an array of strings or a comma-separated string", "csv": "a string or an array of strings"}


def _from_toml(f: Field, value: Any, where: str) -> Any:
    """`value` as read from the file, checked against the flag's type."""
    if f.kind in ("list", "csv"):
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return _normalise(f, value)
        if isinstance(value, str):
            return _normalise(f, [value])
    elif f.kind == "bool" and isinstance(value, bool):
        return value
    elif isinstance(value, bool):
        pass  # TOML true is no number or string
    elif f.kind == "int" and isinstance(value, int):
        return value
    elif f.kind == "float" and isinstance(value, int | float):
        return float(value)
    elif f.kind == "str" and isinstance(value, str):
        return _convert_str(f, value, where)
    raise ConfigError(f"{where}: expected {_TYPE_WORDS[f.kind]}, not {_toml_type(value)} ({_short(value)})")


def _from_env(f: Field, text: str) -> Any:
    where = f.env
    if f.kind in ("list", "csv"):
        return _normalise(f, [text])
    if f.kind == "bool":
        if text.strip().lower() in _TRUE + _FALSE:
            return text.strip().lower() in _TRUE
        raise ConfigError(f"{where}: expected true/false/1/0/yes/no, not {text!r}")
    if f.kind in ("int", "float"):
        try:
            return int(text) if f.kind == "int" else float(text)
        except ValueError:
            raise ConfigError(f"{where}: expected {_TYPE_WORDS[f.kind]}, not {text!r}") from None
    return _convert_str(f, text, where)


def _convert_str(f: Field, text: str, where: str) -> Any:
    if f.convert is None:
        return text
    try:
        return f.convert(text)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _normalise(f: Field, value: Any) -> Any:
    """Lists as one item per address (a flag, env value or string may hold several, comma-separated)."""
    if f.kind not in ("list", "csv") or value is None:
        return value
    items = [item.strip() for v in ([value] if isinstance(value, str) else value) for item in v.split(",")]
    items = [item for item in items if item]
    return items if f.kind == "list" else ",".join(items)


def _check(config: Config, table: dict[str, Field]) -> None:
    """Required settings, choices, and numbers in range."""
    values = config.values
    for name, f in table.items():
        value = getattr(values, name)
        if f.required and value in (None, ""):
            raise ConfigError(f"missing required setting {f.flag} (or {f.env}, or {name} in the config file)")
        if value is None:
            continue
        if f.choices and value not in f.choices:
            raise ConfigError(f"{config.label(name)}: must be one of {', '.join(map(str, f.choices))}, "
                              f"not {value!r}")
        if f.kind in ("int", "float") and not (math.isfinite(value) and value > 0):
            raise ConfigError(f"{config.label(name)}: must be a positive number, not {value!r}")


ELECTION_HEARTBEATS = 5  # etcd refuses an election timeout under 5 heartbeats


def check_raft_timings(config: Config) -> None:
    """Heartbeat, election timeouts: a follower must hear several heartbeats within the shortest
    election timeout, and the range must leave room for randomness (split votes)."""
    v = config.values
    if v.election_timeout_min < ELECTION_HEARTBEATS * v.heartbeat_interval:
        raise ConfigError(f"{config.label('election_timeout_min')}: {v.election_timeout_min:g} s must be at least "
                          f"{ELECTION_HEARTBEATS} x heartbeat_interval ({config.label('heartbeat_interval')}: "
                          f"{v.heartbeat_interval:g} s)")
    if v.election_timeout_max <= v.election_timeout_min:
        raise ConfigError(f"{config.label('election_timeout_max')}: {v.election_timeout_max:g} s must be above "
                          f"election_timeout_min ({config.label('election_timeout_min')}: "
                          f"{v.election_timeout_min:g} s)")


def render(config: Config, environ: Mapping[str, str], header: str = "raftkv serve") -> str:
    """The effective configuration as TOML that --config loads back, each value's source as
    a comment, secrets masked."""
    lines = [f"# {header}: effective configuration (precedence: flag > env > file > default)",
             "# load it back with: raftkv serve --config FILE"]
    if config.file:
        lines.append(f"# read from: {config.file}")
    for name in vars(config.values):
        if name in FLAG_ONLY:
            continue
        value, source = getattr(config.values, name), _source_note(config, name)
        if _is_secret(name) and value not in (None, "", False):
            lines.append(f"# {name} = {MASK}  # {source}, masked")
        elif value is None:
            lines.append(f"# {name} is not set  # {source}")
        else:
            lines.append(f"{name} = {_toml_value(value)}  # {source}")
    for env, what in SECRET_ENVS.items():
        if environ.get(env):
            lines.append(f"# {what}: from env {env} = {MASK}")
    return "\n".join(lines) + "\n"


def _source_note(config: Config, name: str) -> str:
    source = config.sources[name]
    return "default" if source == "default" else f"{source} {config.label(name)}"


def _is_secret(name: str) -> bool:
    """A setting holding a secret itself (a path to one is not a secret)."""
    return any(word in name for word in ("secret", "token", "password")) and not name.endswith("_file")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return _toml_string(str(value))


def _toml_string(text: str) -> str:
    """A TOML basic string: backslash, quote and control characters escaped."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_type(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a float", str: "a string", list: "an array",
             dict: "a table"}
    return next((word for kind, word in names.items() if isinstance(value, kind)), type(value).__name__)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
