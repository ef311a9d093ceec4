"""Serving a FakeNode through the real aiohttp app on 127.0.0.1 (no cluster, no node process)."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from api.app import make_app
from api.context import ApiConfig


def recorder(seen: list):
    """A middleware noting (method, path and query, headers) of every request the app receives."""
    @web.middleware
    async def record(request, handler):
        seen.append((request.method, request.path_qs, dict(request.headers)))
        return await handler(request)
    return record


@pytest.fixture
async def serve():
    """`await serve(node, config=None, seen=None)`: a TestClient of the app serving `node`."""
    clients: list[TestClient] = []

    async def start(node, config: ApiConfig | None = None, seen: list | None = None) -> TestClient:
        app = make_app(node, config or ApiConfig(request_timeout_s=2.0))
        if seen is not None:
            app.middlewares.append(recorder(seen))
        client = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()
