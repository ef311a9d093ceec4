"""Blocking queries (?index=N&wait=D) over the fake node's real watch hub."""

import asyncio
import base64

import pytest

from node.reads import Consistency
from tests.api.fake_node import FakeNode
from tests.support.wait import wait_until_async


@pytest.fixture
async def node_client(serve):
    node = FakeNode()
    node.put("watched", b"v1")  # index 1
    node.put("other", b"o")  # index 2
    return node, await serve(node)


async def held(node, client, path: str, **params):
    """Start a blocking GET and return its task once the node holds it (a watcher is registered)."""
    before = node.hub.waiting
    task = asyncio.create_task(client.get(path, params=params))
    await wait_until_async("the query to block", lambda: node.hub.waiting > before or task.done(), timeout=5,
                           interval=0.005)
    assert not task.done(), "the query answered without blocking"
    return task


async def test_a_write_to_the_key_wakes_the_query_with_the_new_value(node_client):
    node, client = node_client
    task = await held(node, client, "/v1/kv/watched", index="1", wait="30s")
    assert (await client.put("/v1/kv/watched", data=b"v2")).status == 200
    resp = await asyncio.wait_for(task, 5)
    assert resp.status == 200 and resp.headers["X-Consul-Index"] == "3"
    [entry] = await resp.json()
    assert base64.b64decode(entry["Value"]) == b"v2"


async def test_a_write_to_another_key_does_not_end_the_query(node_client):
    node, client = node_client
    task = await held(node, client, "/v1/kv/watched", index="1", wait="300ms")
    assert (await client.put("/v1/kv/unrelated", data=b"x")).status == 200
    resp = await asyncio.wait_for(task, 5)
    [entry] = await resp.json()
    assert resp.headers["X-Consul-Index"] == "1" and base64.b64decode(entry["Value"]) == b"v1"
    assert node.hub.wakeups == 0


async def test_returns_the_current_result_after_the_wait_when_nothing_changes(node_client):
    node, client = node_client
    resp = await asyncio.wait_for(client.get("/v1/kv/watched", params={"index": "1", "wait": "200ms"}), 5)
    assert resp.status == 200 and resp.headers["X-Consul-Index"] == "1"
    assert ("watched", False) in node.waits and node.hub.wakeups == 0 and node.hub.waiting == 0


async def test_an_index_already_passed_answers_at_once(node_client):
    node, client = node_client
    resp = await client.get("/v1/kv/watched", params={"index": "0", "wait": "10m"})
    assert resp.status == 200 and node.waits == []
    resp = await client.get("/v1/kv/other", params={"index": "1", "wait": "10m"})
    assert resp.headers["X-Consul-Index"] == "2" and node.waits == []


async def test_a_prefix_query_wakes_on_a_delete_under_it(node_client):
    node, client = node_client
    node.put("dir/a", b"a")  # index 3
    node.put("dir/b", b"b")  # index 4
    task = await held(node, client, "/v1/kv/dir/", recurse="", index="4", wait="30s")
    assert await (await client.delete("/v1/kv/dir/a")).json() is True
    resp = await asyncio.wait_for(task, 5)
    assert resp.headers["X-Consul-Index"] == "5"
    assert [e["Key"] for e in await resp.json()] == ["dir/b"]
    assert node.waits == [("dir/", True)]


async def test_a_missing_key_query_wakes_when_it_is_created_and_consistent_reverifies(node_client):
    node, client = node_client
    task = await held(node, client, "/v1/kv/later", index="2", wait="30s", consistent="")
    assert (await client.put("/v1/kv/later", data=b"here")).status == 200
    resp = await asyncio.wait_for(task, 5)
    assert resp.status == 200 and resp.headers["X-Consul-Index"] == "3"
    assert node.reads == [(Consistency.CONSISTENT, None)] * 2  # once before, once after the wake-up
