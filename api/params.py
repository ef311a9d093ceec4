"""Parsing of request parameters, in one place, into typed values (Consul's rules).

Boolean parameters are presence-tested (`?recurse`, `?recurse=1`, `?keys=True` alike).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from aiohttp import web

from api.errors import bad_request

MAX_KEY_BYTES = 512
UINT64_MAX = 2**64 - 1


class ReadConsistency(enum.Enum):
    DEFAULT = "leader"
    CONSISTENT = "consistent"
    STALE = "stale"


@dataclass(frozen=True)
class ReadParams:
    consistency: ReadConsistency
    recurse: bool
    keys: bool
    raw: bool
    separator: str | None


def key_from_path(request: web.Request, allow_empty: bool) -> str:
    key = request.match_info.get("key", "")
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


def uint_param(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"invalid {name}: {raw!r} is not an unsigned integer") from None
    if not 0 <= value <= UINT64_MAX:
        raise bad_request(f"invalid {name}: {raw!r} is out of range (0 to 2^64-1)")
    return value


def read_params(request: web.Request) -> ReadParams:
    q = request.query
    if "stale" in q and "consistent" in q:
        raise bad_request("Cannot specify ?stale with ?consistent, conflicting semantics.")
    if "stale" in q:
        consistency = ReadConsistency.STALE
    elif "consistent" in q:
        consistency = ReadConsistency.CONSISTENT
    else:
        consistency = ReadConsistency.DEFAULT
    separator = q.get("separator", q.get("seperator"))  # Consul accepts its old misspelling
    return ReadParams(consistency, "recurse" in q, "keys" in q, "raw" in q, separator or None)
