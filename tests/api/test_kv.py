"""/v1/kv over a fake leader: keys, parameters, headers, limits (Consul's wire format)."""

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.context import ApiConfig
from api.kv import entry_json, one_entry_body
from api.params import parse_duration
from node.codec import DeleteOp, SetOp
from node.state_machine import KVEntry
from tests.api.fake_node import FakeNode


@pytest.fixture
async def node_client(serve):
    node = FakeNode()
    return node, await serve(node, ApiConfig(max_value_bytes=1024, request_timeout_s=2.0))


async def get_json(client, path, **params):
    resp = await client.get(path, params=params)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_put_then_get_one_entry_in_consul_shape(node_client):
    node, client = node_client
    resp = await client.put("/v1/kv/app/name", data=b"hello", params={"flags": "42"})
    assert (resp.status, await resp.json()) == (200, True)
    assert node.proposed == [SetOp("app/name", b"hello", 42, None)]
    resp = await client.get("/v1/kv/app/name")
    assert await resp.json() == [{"LockIndex": 0, "Key": "app/name", "Flags": 42,
                                  "Value": base64.b64encode(b"hello").decode(), "CreateIndex": 1, "ModifyIndex": 1}]
    assert resp.headers["X-Consul-Index"] == "1"
    assert resp.headers["X-Consul-KnownLeader"] == "true"
    assert resp.headers["X-Consul-LastContact"] == "0"
    assert resp.headers["X-Consul-Effective-Consistency"] == "leader"


async def test_flags_reset_to_zero_when_omitted_and_empty_value_is_null(node_client):
    _, client = node_client
    await client.put("/v1/kv/k", data=b"v", params={"flags": "7"})
    await client.put("/v1/kv/k", data=b"")
    [entry] = await get_json(client, "/v1/kv/k")
    assert (entry["Flags"], entry["Value"], entry["CreateIndex"], entry["ModifyIndex"]) == (0, None, 1, 2)


async def test_raw_returns_the_bytes_as_text_plain(node_client):
    node, client = node_client
    node.put("bin", b"\x00\xffraw")
    resp = await client.get("/v1/kv/bin", params={"raw": ""})
    assert resp.status == 200 and await resp.read() == b"\x00\xffraw"
    assert resp.headers["Content-Type"] == "text/plain"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["X-Consul-Index"] == "1"


async def test_absent_key_is_404_with_empty_body_and_index_headers(node_client):
    node, client = node_client
    node.put("other", b"x")
    node.put("other", b"y")
    resp = await client.get("/v1/kv/missing")
    assert resp.status == 404 and await resp.read() == b""
    assert resp.headers["X-Consul-Index"] == "2" and resp.headers["X-Consul-KnownLeader"] == "true"
    resp = await client.get("/v1/kv/missing", params={"recurse": "1"})
    assert resp.status == 404 and await resp.read() == b""
    assert "X-Consul-Index" in resp.headers


async def test_index_is_never_zero_on_an_empty_store(node_client):
    _, client = node_client
    resp = await client.get("/v1/kv/nothing")
    assert resp.status == 404 and resp.headers["X-Consul-Index"] == "1"


async def test_recurse_lists_entries_under_the_prefix_sorted(node_client):
    node, client = node_client
    for key in ("foo/bar3", "foo/", "foo/bar1", "fop", "foo/bar2"):
        node.put(key, key.encode())
    entries = await get_json(client, "/v1/kv/foo/", recurse="1")
    assert [e["Key"] for e in entries] == ["foo/", "foo/bar1", "foo/bar2", "foo/bar3"]
    assert [base64.b64decode(e["Value"]) for e in entries][1] == b"foo/bar1"
    everything = await get_json(client, "/v1/kv/", recurse="")
    assert [e["Key"] for e in everything] == ["foo/", "foo/bar1", "foo/bar2", "foo/bar3", "fop"]


async def test_keys_without_and_with_separator_fold_as_consul_does(node_client):
    node, client = node_client
    for key in ("bar", "base/foo", "base/base/foo", "base/base/zip"):
        node.put(key, b"")
    assert await get_json(client, "/v1/kv/base/", keys="True") == ["base/base/foo", "base/base/zip", "base/foo"]
    assert await get_json(client, "/v1/kv/base/", keys="", separator="/") == ["base/base/", "base/foo"]
    assert await get_json(client, "/v1/kv/", keys="", separator="/") == ["bar", "base/"]
    assert await get_json(client, "/v1/kv/base/", keys="", seperator="/") == ["base/base/", "base/foo"]
    resp = await client.get("/v1/kv/nope/", params={"keys": ""})
    assert resp.status == 404 and await resp.read() == b""


async def test_keys_at_the_root_of_an_empty_store_is_an_empty_list(node_client):
    _, client = node_client
    assert await get_json(client, "/v1/kv/", keys="") == []


async def test_cas_zero_creates_only_and_cas_index_must_match(node_client):
    node, client = node_client
    assert await (await client.put("/v1/kv/c", data=b"1", params={"cas": "0"})).json() is True
    assert await (await client.put("/v1/kv/c", data=b"2", params={"cas": "0"})).json() is False
    assert await (await client.put("/v1/kv/c", data=b"3", params={"cas": "50"})).json() is False
    assert await (await client.put("/v1/kv/c", data=b"4", params={"cas": "1"})).json() is True
    assert await (await client.put("/v1/kv/absent", data=b"x", params={"cas": "5"})).json() is False
    assert node.state.get("c").value == b"4" and node.state.get("absent") is None


async def test_delete_plain_cas_and_recurse(node_client):
    node, client = node_client
    for key in ("d/1", "d/2", "d/3", "e"):
        node.put(key, b"v")
    assert await (await client.delete("/v1/kv/d/1", params={"cas": "0"})).json() is False
    assert await (await client.delete("/v1/kv/d/1", params={"cas": "9"})).json() is False
    assert await (await client.delete("/v1/kv/d/1", params={"cas": "1"})).json() is True
    assert await (await client.delete("/v1/kv/missing")).json() is True
    assert await (await client.delete("/v1/kv/d/", params={"recurse": ""})).json() is True
    assert list(node.state.entries) == ["e"]
    assert DeleteOp("d/1", False, 0) not in node.proposed  # cas=0 never deletes: nothing proposed


async def test_dc_is_accepted_and_ignored(node_client):
    node, client = node_client
    assert (await client.put("/v1/kv/k", data=b"v", params={"dc": "dc9"})).status == 200
    [entry] = await get_json(client, "/v1/kv/k", dc="anything")
    assert base64.b64decode(entry["Value"]) == b"v"


async def test_utf8_keys_round_trip_and_the_limit_is_512_bytes(node_client):
    node, client = node_client
    for key in ("ключ/ü €", "é" * 256):
        assert (await client.put(f"/v1/kv/{key}", data=b"v")).status == 200, key
        [entry] = await get_json(client, f"/v1/kv/{key}")
        assert entry["Key"] == key
    resp = await client.put("/v1/kv/" + "é" * 256 + "a", data=b"v")
    assert resp.status == 400 and "513 bytes" in await resp.text()
    assert len(node.proposed) == 2


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_empty_key_is_400_unless_recursive(node_client, method):
    node, client = node_client
    resp = await client.request(method, "/v1/kv/")
    assert resp.status == 400 and await resp.text() == "missing key name\n"
    assert node.proposed == []


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_key_with_a_newline_is_400_with_the_reason_not_a_router_404(node_client, method):
    # The route's `.*` did not match a newline, so aiohttp answered its own 404 before the key was
    # validated (schemathesis, issue 12).
    node, client = node_client
    resp = await client.request(method, "/v1/kv/a%0Ab", data=b"v" if method == "PUT" else None)
    assert resp.status == 400 and await resp.text() == "invalid key: contains a newline or NUL\n"
    assert node.proposed == []


async def test_value_over_the_limit_is_413_and_nothing_is_proposed(node_client):
    node, client = node_client
    assert (await client.put("/v1/kv/k", data=b"x" * 1024)).status == 200
    resp = await client.put("/v1/kv/k", data=b"x" * 1025)
    assert resp.status == 413 and "limit is 1024" in await resp.text()
    assert len(node.proposed) == 1


@pytest.mark.parametrize(("method", "query", "reason"), [
    ("PUT", "flags=abc", "invalid flags: 'abc' is not an unsigned integer"),
    ("PUT", "flags=-1", "invalid flags: '-1' is out of range (0 to 2^64-1)"),
    ("PUT", f"cas={2**64}", f"invalid cas: '{2**64}' is out of range (0 to 2^64-1)"),
    ("DELETE", "cas=x", "invalid cas: 'x' is not an unsigned integer"),
    ("DELETE", "cas=3&recurse", "Conflicting flags: cas cannot be used with recurse"),
    ("GET", "index=x", "Invalid index"),
    ("GET", "index=-2", "Invalid index"),
    ("GET", "index=1&wait=5x", "Invalid wait time"),
    ("GET", "max_stale=soon", "Invalid max_stale value"),
    ("GET", "stale&consistent", "Cannot specify ?stale with ?consistent, conflicting semantics."),
    ("GET", "consistent&max_stale=1s", "Cannot specify ?max_stale with ?consistent, conflicting semantics."),
])
async def test_bad_parameters_are_400_with_one_line(node_client, method, query, reason):
    node, client = node_client
    node.put("k", b"v")
    resp = await client.request(method, f"/v1/kv/k?{query}")
    assert resp.status == 400
    assert await resp.text() == reason + "\n"
    assert node.proposed == [] and node.state.get("k").value == b"v"


@pytest.mark.parametrize("query", ["flags=1_000", "flags=%205", "cas=%D9%A3"])
async def test_numbers_are_plain_ascii_digits(node_client, query):
    node, client = node_client
    resp = await client.put(f"/v1/kv/k?{query}", data=b"v")
    assert resp.status == 400
    assert node.proposed == []


@pytest.mark.parametrize(("query", "consistency"), [
    ("", "leader"), ("stale", "stale"), ("stale=1", "stale"), ("consistent", "consistent"),
    ("max_stale=1m30s", "stale"), ("max_stale=0s", "leader"), ("leader", "leader"),
])
async def test_effective_consistency_header(node_client, query, consistency):
    node, client = node_client
    node.put("k", b"v")
    resp = await client.get(f"/v1/kv/k?{query}")
    assert resp.status == 200 and resp.headers["X-Consul-Effective-Consistency"] == consistency


async def test_follower_without_contact_reports_its_uptime_and_no_known_leader(serve):
    node = FakeNode(leader=False)
    node.put("k", b"v")
    node.started -= 1000.0  # up for 1000 s, never heard from a leader
    client = await serve(node)
    resp = await client.get("/v1/kv/k?stale")
    assert resp.status == 200
    assert resp.headers["X-Consul-KnownLeader"] == "false"
    assert 1_000_000 <= int(resp.headers["X-Consul-LastContact"]) < 1_100_000


@pytest.mark.parametrize(("text", "seconds"), [
    ("100ms", 0.1), ("2s", 2.0), ("1m30s", 90.0), ("1.5h", 5400.0), ("250us", 250e-6), ("3µs", 3e-6), (".5s", 0.5),
])
def test_go_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "1x", "s", "1s2"])
def test_malformed_durations_are_refused(text):
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize("query", ["wait=0", "max_stale=0", "wait=-1s"])
async def test_go_durations_zero_and_signed_are_accepted(node_client, query):
    node, client = node_client
    node.put("k", b"v")
    resp = await client.get(f"/v1/kv/k?{query}")
    assert resp.status == 200, await resp.text()


@settings(max_examples=300, deadline=None)
@given(key=st.text(max_size=40), value=st.binary(max_size=40), flags=st.integers(0, 2**64 - 1),
       indexes=st.tuples(st.integers(0, 2**63), st.integers(0, 2**63), st.integers(0, 2**63)),
       session=st.none() | st.text(max_size=40))
def test_a_single_entry_body_is_byte_for_byte_what_json_dumps_writes(key, value, flags, indexes, session):
    create, modify, lock = indexes
    entry = KVEntry(value, flags, create, modify, lock, session)
    assert one_entry_body(key, entry) == json.dumps([entry_json(key, entry)]).encode()
