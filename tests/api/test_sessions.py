"""/v1/session, ?acquire/?release, the txn session verbs and /v1/agent/self over a fake leader."""

import asyncio
import base64
import json

import pytest

from api.context import ApiConfig
from node.codec import SessionOp
from tests.api.fake_node import FakeNode
from tests.support.wait import wait_until_async


@pytest.fixture
async def node_client(serve):
    node = FakeNode()
    return node, await serve(node)


async def create(client, **body) -> str:
    resp = await client.put("/v1/session/create", data=json.dumps(body) if body else b"")
    assert resp.status == 200, await resp.text()
    return (await resp.json())["ID"]


async def test_session_create_defaults_and_info_in_consuls_shape(node_client):
    node, client = node_client
    sid = await create(client)
    resp = await client.get(f"/v1/session/info/{sid}")
    [doc] = await resp.json()
    assert doc == {"ID": sid, "Name": "", "Node": "n1", "LockDelay": 15_000_000_000, "Behavior": "release",
                   "TTL": "", "NodeChecks": ["serfHealth"], "ServiceChecks": None,
                   "CreateIndex": doc["CreateIndex"], "ModifyIndex": doc["CreateIndex"]}
    assert int(resp.headers["X-Consul-Index"]) == doc["CreateIndex"] >= 1


async def test_session_create_reads_fields_case_insensitively_as_py_consul_sends_them(node_client):
    _, client = node_client
    sid = await create(client, name="job", behavior="delete", ttl="10s", lockdelay="5s", checks=[])
    [doc] = await (await client.get(f"/v1/session/info/{sid}")).json()
    assert (doc["Name"], doc["Behavior"], doc["TTL"], doc["LockDelay"], doc["NodeChecks"]) == \
        ("job", "delete", "10s", 5_000_000_000, [])


@pytest.mark.parametrize("lock_delay, ns", [(5, 5_000_000_000), (2_000_000_000, 2_000_000_000),
                                            ("0s", 0), ("90s", 60_000_000_000)])
async def test_session_lock_delay_numbers_below_1000_are_seconds_and_60s_is_the_cap(node_client, lock_delay, ns):
    _, client = node_client
    sid = await create(client, LockDelay=lock_delay)
    [doc] = await (await client.get(f"/v1/session/info/{sid}")).json()
    assert doc["LockDelay"] == ns


@pytest.mark.parametrize("body, reason", [
    ({"TTL": "5s"}, "Invalid Session TTL '5000000000', must be between [10s=24h0m0s]"),
    ({"TTL": "25h"}, "Invalid Session TTL '90000000000000', must be between [10s=24h0m0s]"),
    ({"TTL": "soon"}, "Session TTL 'soon' invalid"),
    ({"Behavior": "explode"}, "Invalid Behavior setting 'explode'"),
    ({"NodeChecks": ["service:web"]}, "Check 'service:web' is not supported"),
    ({"ServiceChecks": [{"ID": "web"}]}, "ServiceChecks are not supported"),
    ({"NodeChecks": [], "Checks": [None]}, "Request decode failed: Checks must be a list of check IDs"),
    ({"Name": 5}, "Request decode failed: Name must be a string"),
    ([1], "Request decode failed"),
])
async def test_session_create_refuses_bad_input_with_consuls_400(node_client, body, reason):
    node, client = node_client
    resp = await client.put("/v1/session/create", data=json.dumps(body))
    assert resp.status == 400 and reason in await resp.text()
    assert not node.state.sessions.sessions


async def test_session_create_for_an_unknown_node_is_refused_with_consuls_line(node_client):
    _, client = node_client
    resp = await client.put("/v1/session/create", data=json.dumps({"Node": "elsewhere"}))
    assert resp.status == 400 and await resp.text() == "Missing node registration\n"


async def test_session_destroy_is_idempotent_and_renew_of_a_gone_session_is_404(node_client):
    node, client = node_client
    sid = await create(client, TTL="15s")
    resp = await client.put(f"/v1/session/renew/{sid}")
    [doc] = await resp.json()
    assert resp.status == 200 and doc["ID"] == sid and doc["TTL"] == "15s" and node.renewed == [sid]
    for _ in range(2):
        resp = await client.put(f"/v1/session/destroy/{sid}")
        assert resp.status == 200 and await resp.json() is True
    resp = await client.put(f"/v1/session/renew/{sid}")
    assert resp.status == 404 and await resp.text() == f"Session id '{sid}' not found\n"
    assert await (await client.get(f"/v1/session/info/{sid}")).json() == []


async def test_session_list_and_node_list_sessions_sorted(node_client):
    node, client = node_client
    ids = sorted([await create(client), await create(client)])
    listed = await (await client.get("/v1/session/list")).json()
    assert [s["ID"] for s in listed] == ids
    assert [s["ID"] for s in await (await client.get("/v1/session/node/n1")).json()] == ids
    assert await (await client.get("/v1/session/node/other")).json() == []


async def test_session_list_blocks_until_a_session_changes(node_client):
    _, client = node_client
    await create(client)
    resp = await client.get("/v1/session/list")
    index = int(resp.headers["X-Consul-Index"])
    blocked = asyncio.ensure_future(client.get(f"/v1/session/list?index={index}&wait=5s"))
    await asyncio.sleep(0.1)
    assert not blocked.done()
    sid = await create(client)
    resp = await asyncio.wait_for(blocked, 5)
    assert int(resp.headers["X-Consul-Index"]) > index and sid in [s["ID"] for s in await resp.json()]


async def test_kv_acquire_release_show_session_and_lock_index(node_client):
    _, client = node_client
    s1, s2 = await create(client), await create(client)
    assert await (await client.put(f"/v1/kv/lock?acquire={s1}", data=b"me")).json() is True
    [doc] = await (await client.get("/v1/kv/lock")).json()
    assert (doc["Session"], doc["LockIndex"], base64.b64decode(doc["Value"])) == (s1, 1, b"me")
    assert await (await client.put(f"/v1/kv/lock?acquire={s2}", data=b"you")).json() is False
    assert await (await client.put(f"/v1/kv/lock?release={s2}")).json() is False
    assert await (await client.put(f"/v1/kv/lock?release={s1}", data=b"done")).json() is True
    [doc] = await (await client.get("/v1/kv/lock")).json()
    assert "Session" not in doc and doc["LockIndex"] == 1
    resp = await client.put("/v1/kv/lock?acquire=not-a-session")
    assert resp.status == 400 and 'invalid session "not-a-session"' in await resp.text()


async def test_kv_acquire_is_refused_during_lock_delay_after_the_session_ends(node_client):
    node, client = node_client
    s1 = await create(client, LockDelay="30s")
    s2 = await create(client)
    assert await (await client.put(f"/v1/kv/k?acquire={s1}")).json() is True
    await node.propose(SessionOp("invalidate", {"id": s1}), 1.0)  # the leader's expiry
    # The keeper hears of the invalidation on the loop: wait for the delay it then notes.
    await wait_until_async("the lock-delay to be noted", lambda: node.lock_delay_left_s("k") > 0, timeout=5)
    assert 29 < node.lock_delay_left_s("k") <= 30
    assert await (await client.put(f"/v1/kv/k?acquire={s2}")).json() is False
    [doc] = await (await client.get("/v1/kv/k")).json()
    assert "Session" not in doc and doc["LockIndex"] == 1
    resp = await client.put("/v1/txn", json=[{"KV": {"Verb": "lock", "Key": "k", "Session": s2}}])
    assert resp.status == 409
    assert (await resp.json())["Errors"] == [{"OpIndex": 0, "What": 'failed to lock key "k" due to lock delay'}]


async def test_txn_lock_and_check_session(node_client):
    _, client = node_client
    sid = await create(client, LockDelay=0)
    resp = await client.put("/v1/txn", json=[{"KV": {"Verb": "lock", "Key": "t", "Value": "eA==", "Session": sid}},
                                             {"KV": {"Verb": "check-session", "Key": "t", "Session": sid}}])
    doc = await resp.json()
    assert resp.status == 200 and doc["Results"][0]["KV"]["Session"] == sid
    assert doc["Results"][0]["KV"]["LockIndex"] == 1
    resp = await client.put("/v1/txn", json=[{"KV": {"Verb": "check-session", "Key": "t", "Session": "other"}}])
    assert resp.status == 409 and "failed session check" in (await resp.json())["Errors"][0]["What"]


async def test_session_routes_enforce_session_rules_when_acls_are_on(serve):
    node = FakeNode()
    client = await serve(node, ApiConfig(request_timeout_s=2.0, acl_default_policy="deny"))
    resp = await client.put("/v1/session/create")
    assert resp.status == 403 and "lacks permission 'session:write' on \"n1\"" in await resp.text()
    assert (await (await client.get("/v1/session/list")).json()) == []


async def test_agent_self_names_the_node_and_datacenter(node_client):
    _, client = node_client
    doc = await (await client.get("/v1/agent/self")).json()
    assert doc["Config"]["NodeName"] == "n1" and doc["Config"]["Datacenter"] == "dc1"
    assert doc["Config"]["SessionTTLMin"] == "10s" and doc["Member"]["Name"] == "n1"
