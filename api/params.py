"""Parsing of request parameters, in one place, into typed values (Consul's rules).

Both HTTP fronts (aiohttp and api.fast_http) pass the query as a mapping.
Boolean parameters are presence-tested (`?recurse`, `?recurse=1`, `?keys=True` alike).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from api.errors import bad_request
from node.reads import Consistency

MAX_KEY_BYTES = 512
UINT64_MAX = 2**64 - 1
DEFAULT_WAIT_S = 300.0  # Consul's default_query_time
MAX_WAIT_S = 600.0  # Consul's max_query_time
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class ReadParams:
    consistency: Consistency
    recurse: bool
    keys: bool
    raw: bool
    separator: str | None
    max_stale_s: float | None = None  # with STALE: answer locally only if the leader was heard within it
    index: int = 0  # blocking query: wait until the result's index exceeds this (0: do not block)
    wait_s: float = DEFAULT_WAIT_S


def parse_duration(text: str) -> float:
    """Go's time.ParseDuration, which Consul uses: '500ms', '2s', '1m30s', '1h', an optional
    sign, and a bare '0'. Seconds."""
    sign = -1.0 if text[:1] == "-" else 1.0
    text = text[1:] if text[:1] in ("-", "+") else text
    if text == "0":
        return 0.0
    pos, total = 0, 0.0
    if not text:
        raise ValueError("empty duration")
    while pos < len(text):
        m = _DURATION_PART.match(text, pos)
        if m is None:
            raise ValueError(f"invalid duration {text!r}")
        total += float(m.group(1)) * _UNIT_S[m.group(2)]
        pos = m.end()
    return sign * total


def _ascii_uint(raw: str) -> int:
    """ASCII digits only, as strconv.ParseUint takes them (no spaces, underscores or other
    scripts' digits); a leading minus is read, for the caller's range check to refuse."""
    digits = raw[1:] if raw[:1] == "-" else raw
    if not (digits.isascii() and digits.isdigit()):
        raise ValueError(raw)
    return int(raw)


def parse_key(key: str, allow_empty: bool) -> str:
    """The key named by a /v1/kv/<key> path (already URL-decoded), validated."""
    if not key:
        if allow_empty:
            return ""
        raise bad_request("missing key name")
    if "\n" in key or "\x00" in key:
        raise bad_request("invalid key: contains a newline or NUL")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise bad_request("invalid key: not valid UTF-8") from None
    if size > MAX_KEY_BYTES:
        raise bad_request(f"invalid key: {size} bytes, the limit is {MAX_KEY_BYTES}")
    return key


def request_key(decoded: str, raw_path: str, allow_empty: bool) -> str:
    """The key of a /v1/kv/<key> request as aiohttp decoded it (`decoded`), validated, and checked
    against the raw path: aiohttp leaves an escape it cannot decode as UTF-8 text (`%FF`, `%zz`)
    in the key verbatim, which would store a key the client did not name (and alias `%25FF`)."""
    raw = raw_path.partition("?")[0]
    if "%" in raw:
        if _BAD_ESCAPE.search(raw):
            raise bad_request("invalid key: malformed percent-escape")
        try:
            unquote_to_bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise bad_request("invalid key: not valid UTF-8") from None
    return parse_key(decoded, allow_empty)


def uint_param(query: Mapping[str, str], name: str) -> int | None:
    raw = query.get(name)
    if raw is None:
        return None
    try:
        value = _ascii_uint(raw)
    except ValueError:
        raise bad_request(f"invalid {name}: {raw!r} is not an unsigned integer") from None
    if not 0 <= value <= UINT64_MAX:
        raise bad_request(f"invalid {name}: {raw!r} is out of range (0 to 2^64-1)")
    return value


def read_params(q: Mapping[str, str]) -> ReadParams:
    if "stale" in q and "consistent" in q:
        raise bad_request("Cannot specify ?stale with ?consistent, conflicting semantics.")
    if "stale" in q:
        consistency = Consistency.STALE
    elif "consistent" in q:
        consistency = Consistency.CONSISTENT
    else:
        consistency = Consistency.DEFAULT
    separator = q.get("separator", q.get("seperator"))  # Consul accepts its old misspelling
    max_stale_s = _duration_param(q, "max_stale", "Invalid max_stale value")
    if max_stale_s is not None:
        if consistency is Consistency.CONSISTENT:
            raise bad_request("Cannot specify ?max_stale with ?consistent, conflicting semantics.")
        if max_stale_s > 0:
            consistency = Consistency.STALE
    index = 0
    if "index" in q:
        try:
            index = _ascii_uint(q["index"])
            if not 0 <= index <= UINT64_MAX:
                raise ValueError
        except ValueError:
            raise bad_request("Invalid index") from None
    wait_s = _duration_param(q, "wait", "Invalid wait time")
    if wait_s is None or wait_s <= 0:
        wait_s = DEFAULT_WAIT_S
    return ReadParams(consistency, "recurse" in q, "keys" in q, "raw" in q, separator or None,
                      max_stale_s, index, min(wait_s, MAX_WAIT_S))


def _duration_param(query, name: str, error: str) -> float | None:
    """A Go-style duration parameter in seconds, None when absent; 400 with `error` if malformed."""
    if name not in query:
        return None
    try:
        return parse_duration(query[name])
    except ValueError:
        raise bad_request(error) from None
