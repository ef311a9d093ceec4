"""The one way raftkv makes HTTP client sessions (forwarding, load tests, experiments)."""

from __future__ import annotations

import aiohttp


def client_session(**kwargs) -> aiohttp.ClientSession:
    """An aiohttp session that never resends a request by itself.

    aiohttp retries idempotent methods (PUT, DELETE) once when the connection breaks. For a
    replicated store that is wrong twice over: a write whose first copy was applied is applied
    again (a check-and-set then answers false although it succeeded), and a retry that cannot
    connect makes a write that may have landed look as if it was never sent. There is no
    public switch; `_retry_connection` is the attribute aiohttp's own test client turns off
    (tests/unit/test_http_client.py pins it).
    """
    session = aiohttp.ClientSession(**kwargs)
    session._retry_connection = False
    return session
