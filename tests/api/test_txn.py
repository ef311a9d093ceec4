"""PUT /v1/txn over a fake leader: every verb, rollback, limits, malformed bodies."""

import base64
import json

import pytest

from api.context import ApiConfig
from node.codec import TxnOp
from tests.api.fake_node import FakeNode


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def kv(verb: str, key: str, value: bytes | None = None, **extra) -> dict:
    op = {"Verb": verb, "Key": key, **extra}
    if value is not None:
        op["Value"] = b64(value)
    return {"KV": op}


@pytest.fixture
async def node_client(serve):
    node = FakeNode()
    for key in ("a", "t/1", "t/2", "gone/1", "gone/2", "del", "delcas"):
        node.put(key, key.encode())  # indexes 1..7
    return node, await serve(node, ApiConfig(max_value_bytes=64, request_timeout_s=2.0))


async def test_every_verb_in_one_transaction(node_client):
    node, client = node_client
    ops = [
        kv("set", "new", b"n", Flags=3),
        kv("cas", "a", b"a2", Index=1),
        kv("get", "t/1"),
        kv("get-tree", "t/"),
        kv("check-index", "del", Index=6),
        kv("check-not-exists", "nothing"),
        kv("delete", "del"),
        kv("delete-tree", "gone/"),
        kv("delete-cas", "delcas", Index=7),
    ]
    resp = await client.put("/v1/txn", data=json.dumps(ops))
    assert resp.status == 200, await resp.text()
    doc = await resp.json()
    assert doc["Errors"] is None
    got = [(r["KV"]["Key"], r["KV"]["Value"], r["KV"]["ModifyIndex"]) for r in doc["Results"]]
    assert got == [("new", None, 8), ("a", None, 8), ("t/1", b64(b"t/1"), 2),
                   ("t/1", b64(b"t/1"), 2), ("t/2", b64(b"t/2"), 3), ("del", None, 6)]
    assert doc["Results"][0]["KV"]["Flags"] == 3
    assert sorted(node.state.entries) == ["a", "new", "t/1", "t/2"]
    assert node.state.get("a").value == b"a2" and node.state.get("new").create_index == 8
    assert len(node.proposed) == 1 and isinstance(node.proposed[0], TxnOp)


async def test_rollback_is_409_with_errors_and_changes_nothing(node_client):
    node, client = node_client
    before = dict(node.state.entries.items())
    ops = [kv("set", "x", b"x"), kv("delete", "a"), kv("cas", "t/1", b"z", Index=99), kv("get", "missing")]
    resp = await client.put("/v1/txn", data=json.dumps(ops))
    assert resp.status == 409
    doc = await resp.json()
    assert doc["Results"] is None
    assert [e["OpIndex"] for e in doc["Errors"]] == [2, 3]
    assert all(isinstance(e["What"], str) and e["What"] for e in doc["Errors"])
    assert dict(node.state.entries.items()) == before


async def test_128_operations_pass_and_129_are_413(node_client):
    node, client = node_client
    resp = await client.put("/v1/txn", data=json.dumps([kv("set", f"k{i}", b"v") for i in range(128)]))
    assert resp.status == 200 and len((await resp.json())["Results"]) == 128
    resp = await client.put("/v1/txn", data=json.dumps([kv("set", f"k{i}", b"v") for i in range(129)]))
    assert resp.status == 413
    assert await resp.text() == "Transaction contains too many operations (129 > 128)\n"
    assert len(node.proposed) == 1


async def test_value_over_the_limit_is_413(node_client):
    node, client = node_client
    resp = await client.put("/v1/txn", data=json.dumps([kv("set", "big", b"x" * 65)]))
    assert resp.status == 413 and "too large (65 > 64)" in await resp.text()
    assert node.proposed == []


@pytest.mark.parametrize(("body", "reason"), [
    (b"{not json", "Failed to parse body: "),
    (b"\xff\xfe", "Failed to parse body: "),
    (b'{"KV": {}}', "Failed to parse body: expected a JSON array of operations"),
    (b'[{"Node": {}}]', "operation 0: only KV operations are supported"),
    (b'[{"KV": {"Verb": "acquire", "Key": "a"}}]', "operation 0: unsupported KV verb 'acquire'"),
    (b'[{"KV": {"Verb": {}, "Key": "a"}}]', "operation 0: unsupported KV verb {}"),  # was a 500 (schemathesis)
    (b'[{"KV": {"Verb": ["set"], "Key": "a"}}]', "operation 0: unsupported KV verb ['set']"),
    (b'[{"KV": {"Verb": "set", "Key": ""}}]', "operation 0: missing key name"),
    (b'[{"KV": {"Verb": "set", "Key": "a", "Value": "%%%"}}]', "operation 0: Value is not valid base64"),
    (b'[{"KV": {"Verb": "cas", "Key": "a", "Index": -1}}]', "operation 0: Index must be an unsigned integer"),
    (b'[{"KV": {"Verb": "set", "Key": "a", "Flags": "1"}}]', "operation 0: Flags must be an unsigned integer"),
    # A wrong type that happens to be falsy is still a wrong type (Consul's JSON decoding refuses it);
    # these were applied as 0 or b"" (schemathesis, issue 12).
    (b'[{"KV": {"Verb": "set", "Key": "a", "Index": {}}}]', "operation 0: Index must be an unsigned integer"),
    (b'[{"KV": {"Verb": "set", "Key": "a", "Flags": false}}]', "operation 0: Flags must be an unsigned integer"),
    (b'[{"KV": {"Verb": "set", "Key": "a", "Flags": ""}}]', "operation 0: Flags must be an unsigned integer"),
    (b'[{"KV": {"Verb": "set", "Key": "a", "Value": []}}]', "operation 0: Value is not valid base64"),
    (b'[{"KV": {"Verb": "set", "Key": "a", "Value": 0}}]', "operation 0: Value is not valid base64"),
    (json.dumps([kv("set", "é" * 257)]).encode(), "operation 0: invalid key: 514 bytes, the limit is 512"),
])
async def test_malformed_transactions_are_400_with_one_line(node_client, body, reason):
    node, client = node_client
    resp = await client.put("/v1/txn", data=body)
    text = await resp.text()
    assert resp.status == 400 and text.startswith(reason)
    assert text.count("\n") == 1 and text.endswith("\n")
    assert node.proposed == []


async def test_transaction_body_over_max_txn_bytes_is_413(serve):
    node = FakeNode()
    client = await serve(node, ApiConfig(max_value_bytes=64, max_txn_bytes=1000))
    body = json.dumps([kv("set", f"key/{i}", b"v" * 60) for i in range(40)])
    assert len(body) > 1000
    resp = await client.put("/v1/txn", data=body)
    assert resp.status == 413
    assert node.proposed == []
