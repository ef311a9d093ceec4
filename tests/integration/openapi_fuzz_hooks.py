"""Schemathesis hooks for tests/integration/test_openapi_fuzz.py (loaded through SCHEMATHESIS_HOOKS).

They keep the fuzzing inside its test cluster and bounded, without taking inputs away from it:
* every key (path and transaction bodies) lives under FUZZ_PREFIX;
* a blocking query (`?index=`) waits at most BLOCKING_WAIT instead of the 5-minute default;
* a well-formed HOST:PORT given to the operator API becomes 127.0.0.1:1, where nothing answers
  (a generated host name would be resolved, and a generated address dialled); a malformed
  one is sent as generated, since the server refuses it before resolving anything;
* member ids get a prefix no node has, so no random request removes or elects a real member;
* the console's event stream is asked for `?once` (one round, then the end), else it never ends.
"""

from __future__ import annotations

from typing import Any

import schemathesis

from api.addresses import AddressError, parse_hostport

FUZZ_PREFIX = "fuzz/"
BLOCKING_WAIT = "50ms"
NOBODY = "127.0.0.1:1"  # a valid address where nothing listens


def _prefixed(key: Any) -> Any:
    return FUZZ_PREFIX + key if isinstance(key, str) else key


def _loopback_only(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        parse_hostport(value, "address", resolve=False)
    except AddressError:
        return value  # refused before any look-up
    return NOBODY


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    if case.path_parameters and "key" in case.path_parameters:
        case.path_parameters["key"] = _prefixed(case.path_parameters["key"])
    if case.path == "/v1/txn" and isinstance(case.body, list):
        for op in case.body:
            if isinstance(op, dict) and isinstance(op.get("KV"), dict) and "Key" in op["KV"]:
                op["KV"]["Key"] = _prefixed(op["KV"]["Key"])
    if case.path == "/v1/raftkv/ui/events":  # an endless stream otherwise: one round of events, then the end
        case.query = {**(case.query or {}), "once": ""}
    query = case.query
    if query is None:
        return
    if "index" in query:
        query["wait"] = BLOCKING_WAIT
    if case.path.startswith("/v1/operator/"):
        for name in ("address", "http"):
            if name in query:
                query[name] = _loopback_only(query[name])
        if "id" in query and isinstance(query["id"], str):
            query["id"] = "fuzz-" + query["id"]
