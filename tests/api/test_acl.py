"""ACL enforcement over a fake node, through both HTTP fronts (the lean front of api/fast_http.py
and aiohttp alone): the lean front must never be a way around a token check."""

from __future__ import annotations

import base64
import contextlib
import json

import aiohttp
import pytest

from api.context import ApiConfig
from tests.api.fake_node import FakeNode
from tests.api.test_lean_front import served

DENY = ApiConfig(max_value_bytes=1024, request_timeout_s=2.0, acl_default_policy="deny")
ANONYMOUS = "00000000-0000-0000-0000-000000000002"


class Api:
    """HTTP calls to one front of the served node."""

    def __init__(self, session: aiohttp.ClientSession, port: int) -> None:
        self.session, self.base = session, f"http://127.0.0.1:{port}"

    async def call(self, method: str, path: str, secret: str | None = None, body=None, **params):
        headers = {"X-Consul-Token": secret} if secret else {}
        data = json.dumps(body) if isinstance(body, (dict, list)) else body
        async with self.session.request(method, self.base + path, headers=headers, data=data,
                                        params=params) as resp:
            return resp.status, resp.headers, await resp.read()


@contextlib.asynccontextmanager
async def fronts(config: ApiConfig = DENY):
    """(node, lean front's Api, aiohttp's Api, management secret, {name: secret}) with tokens
    'read' (app/ read), 'write' (app/ write, app/locked denied) made through the API."""
    node = FakeNode()
    async with served(node, True, config) as lean_port, served(node, False, config) as aio_port, \
            aiohttp.ClientSession() as session:
        lean, aio = Api(session, lean_port), Api(session, aio_port)
        tokens = {}
        if config.acl_default_policy:
            status, _, body = await aio.call("PUT", "/v1/acl/bootstrap")
            assert status == 200, body
            tokens["mgmt"] = json.loads(body)["SecretID"]
            for name, rules in (("app-read", 'key_prefix "app/" { policy = "read" }'),
                                ("app-write", 'key_prefix "app/" { policy = "write" }\n'
                                              'key "app/locked" { policy = "deny" }')):
                status, _, body = await aio.call("PUT", "/v1/acl/policy", tokens["mgmt"],
                                                 {"Name": name, "Rules": rules})
                assert status == 200, body
            for name, policy in (("read", "app-read"), ("write", "app-write")):
                status, _, body = await aio.call("PUT", "/v1/acl/token", tokens["mgmt"],
                                                 {"Description": name, "Policies": [{"Name": policy}]})
                assert status == 200, body
                tokens[name] = json.loads(body)["SecretID"]
        node.put("app/x", b"1")
        node.put("app/locked", b"L")
        node.put("other", b"o")
        yield node, lean, aio, tokens


def value(body: bytes) -> bytes:
    return base64.b64decode(json.loads(body)[0]["Value"])


@pytest.mark.parametrize("front", ["lean", "aiohttp"])
async def test_acl_kv_routes_enforce_tokens_on_both_fronts(front):
    async with fronts() as (node, lean, aio, t):
        api = lean if front == "lean" else aio
        status, headers, body = await api.call("GET", "/v1/kv/app/x")
        assert status == 403 and headers["X-Consul-Default-ACL-Policy"] == "deny"
        assert body.decode().strip() == (f"Permission denied: token with AccessorID '{ANONYMOUS}' lacks "
                                         "permission 'key:read' on \"app/x\"")
        status, _, body = await api.call("GET", "/v1/kv/app/x", t["read"])
        assert status == 200 and value(body) == b"1"
        assert (await api.call("GET", "/v1/kv/other", t["read"]))[0] == 403
        assert (await api.call("PUT", "/v1/kv/app/x", t["read"], b"changed"))[0] == 403
        assert (await api.call("DELETE", "/v1/kv/app/x", t["read"]))[0] == 403
        assert (await api.call("PUT", "/v1/kv/app/locked", t["write"], b"changed"))[0] == 403
        assert node.state.get("app/x").value == b"1" and node.state.get("app/locked").value == b"L"
        status, _, body = await api.call("PUT", "/v1/kv/app/x", t["write"], b"2")
        assert (status, body) == (200, b"true") and node.state.get("app/x").value == b"2"
        assert (await api.call("GET", "/v1/kv/app/x", "no-such-secret"))[:3:2] == (403, b"ACL not found\n")
        assert (await api.call("GET", "/v1/kv/app/x", t["mgmt"]))[0] == 200


async def test_acl_token_in_query_or_bearer_is_checked_like_the_header():
    async with fronts() as (node, lean, aio, t):
        for api in (lean, aio):
            status, _, _ = await api.call("PUT", "/v1/kv/app/q", None, b"v", token=t["write"])
            assert status == 200
            assert (await api.call("PUT", "/v1/kv/app/q", None, b"v", token=t["read"]))[0] == 403
            async with api.session.get(api.base + "/v1/kv/app/q",
                                       headers={"Authorization": f"Bearer {t['read']}"}) as r:
                assert r.status == 200
            async with api.session.delete(api.base + "/v1/kv/app/q",
                                          headers={"Authorization": f"Bearer {t['read']}"}) as r:
                assert r.status == 403
        assert node.state.get("app/q").value == b"v"


async def test_acl_listings_show_only_readable_keys_and_recursive_delete_needs_the_whole_prefix():
    async with fronts() as (node, _, aio, t):
        status, _, body = await aio.call("GET", "/v1/kv/", t["read"], recurse="")
        assert status == 200 and [e["Key"] for e in json.loads(body)] == ["app/locked", "app/x"]
        status, _, body = await aio.call("GET", "/v1/kv/", t["write"], keys="")
        assert json.loads(body) == ["app/x"]  # app/locked is denied to 'write'
        assert (await aio.call("GET", "/v1/kv/", None, recurse=""))[0] == 404  # nothing readable
        assert (await aio.call("DELETE", "/v1/kv/app/", t["write"], recurse=""))[0] == 403
        assert node.state.get("app/x") is not None
        assert (await aio.call("DELETE", "/v1/kv/app/", t["mgmt"], recurse=""))[0] == 200
        assert node.state.get("app/x") is None and node.state.get("other") is not None


async def test_acl_txn_with_one_denied_op_applies_nothing_and_names_it():
    async with fronts() as (node, _, aio, t):
        ops = [{"KV": {"Verb": "set", "Key": "app/new", "Value": base64.b64encode(b"n").decode()}},
               {"KV": {"Verb": "delete", "Key": "app/locked"}},
               {"KV": {"Verb": "get", "Key": "other"}}]
        status, _, body = await aio.call("PUT", "/v1/txn", t["write"], ops)
        assert status == 409 and json.loads(body)["Errors"] == [
            {"OpIndex": 1, "What": "Permission denied: token with AccessorID '"
             + json.loads((await aio.call("GET", "/v1/acl/token/self", t["write"]))[2])["AccessorID"]
             + "' lacks permission 'key:write' on \"app/locked\""}]
        assert node.state.get("app/new") is None and node.state.get("app/locked") is not None
        status, _, body = await aio.call("PUT", "/v1/txn", t["write"], [ops[0], ops[2]])
        assert status == 200 and [r["KV"]["Key"] for r in json.loads(body)["Results"]] == ["app/new"]  # get filtered


async def test_acl_snapshot_operator_and_acl_routes_need_their_permissions(tmp_path):
    async with fronts() as (node, _, aio, t):
        node.snapshot_dir = str(tmp_path)
        for path in ("/v1/snapshot", "/v1/operator/raft/configuration", "/v1/acl/tokens", "/v1/acl/policies",
                     "/v1/raftkv/status", "/v1/raftkv/ui/events?once", "/v1/raftkv/ui/timeline",
                     "/v1/raftkv/ui/snapshots", "/v1/raftkv/ui/locks"):
            assert (await aio.call("GET", path, t["write"]))[0] == 403, path
            assert (await aio.call("GET", path, t["mgmt"]))[0] == 200, path
        assert (await aio.call("GET", "/v1/status/leader"))[0] == 200  # open, as in Consul
        assert (await aio.call("GET", "/ui/"))[0] == 200  # the console's files are open; what they show is not
        status, _, body = await aio.call("PUT", "/v1/snapshot", t["write"], b"not even a snapshot")
        assert status == 403 and b"lacks permission 'acl:write'" in body  # checked before the body is read
        status, _, body = await aio.call("PUT", "/v1/acl/policy", t["write"], {"Name": "x"})
        assert status == 403 and b"lacks permission 'acl:write'" in body


async def test_acl_bootstrap_is_refused_the_second_time_with_the_reset_index():
    async with fronts() as (_, _, aio, t):
        status, _, body = await aio.call("PUT", "/v1/acl/bootstrap")
        assert status == 403 and body.decode().startswith("Permission denied: ACL bootstrap no longer allowed "
                                                          "(reset index: ")


async def test_acl_policy_and_token_routes_in_consuls_shapes():
    async with fronts() as (_, _, aio, t):
        mgmt = t["mgmt"]
        status, _, body = await aio.call("PUT", "/v1/acl/policy", mgmt, {"name": "bad", "rules": 'key "x" {'})
        assert status == 400 and body.count(b"\n") == 1 and b"Failed to parse ACL rules" in body
        # py-consul's shape: lower-case fields, rules as a JSON document in a string
        rules = json.dumps({"key_prefix": {"cfg/": {"policy": "read"}}})
        status, _, body = await aio.call("PUT", "/v1/acl/policy", mgmt, {"name": "cfg", "rules": rules})
        policy = json.loads(body)
        assert status == 200 and set(policy) >= {"ID", "Name", "Description", "Rules", "Hash", "CreateIndex",
                                                 "ModifyIndex"}
        status, _, body = await aio.call("GET", "/v1/acl/policy/name/cfg", mgmt)
        assert json.loads(body)["ID"] == policy["ID"]
        status, _, body = await aio.call("PUT", "/v1/acl/token", mgmt, {"Policies": [{"ID": policy["ID"]}]})
        created = json.loads(body)
        assert status == 200 and created["Policies"] == [{"ID": policy["ID"], "Name": "cfg"}]
        status, _, body = await aio.call("GET", f"/v1/acl/token/{created['AccessorID']}", mgmt)
        assert json.loads(body)["SecretID"] == "<hidden>"  # shown once, at creation
        status, _, body = await aio.call("GET", "/v1/acl/token/self", created["SecretID"])
        assert json.loads(body)["AccessorID"] == created["AccessorID"]
        assert (await aio.call("DELETE", f"/v1/acl/policy/{policy['ID']}", mgmt))[:3:2] == (200, b"true")
        assert (await aio.call("GET", f"/v1/acl/policy/{policy['ID']}", mgmt))[0] == 404
        assert (await aio.call("DELETE", f"/v1/acl/token/{created['AccessorID']}", mgmt))[0] == 200
        assert (await aio.call("GET", "/v1/acl/token/self", created["SecretID"]))[:3:2] == (403, b"ACL not found\n")


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/acl/token", {"Description": "x", "ModifyIndex": {}}),
    ("/v1/acl/token", {"Description": "x", "CreateIndex": "3"}),
    ("/v1/acl/token", {"Description": "x", "Local": "yes"}),
    ("/v1/acl/policy", {"Name": "p", "ModifyIndex": -1}),
    ("/v1/acl/token", {"Description": "x", "CreateTime": {}}),
    ("/v1/acl/policy", {"Name": "p", "Hash": 5}),
])
async def test_acl_bodies_with_fields_of_the_wrong_type_are_400_and_change_nothing(path, body):
    # Consul decodes bodies into typed fields, read-only ones included (schemathesis: a token was
    # created from a body whose ModifyIndex was {}).
    async with fronts() as (node, _, aio, t):
        before = len(node.proposed)
        status, _, text = await aio.call("PUT", path, t["mgmt"], body)
        assert status == 400 and text.count(b"\n") == 1 and b"decoding failed" in text, text
        assert len(node.proposed) == before


async def test_acl_off_allows_everything_and_says_so():
    async with fronts(ApiConfig(max_value_bytes=1024, request_timeout_s=2.0)) as (_, lean, aio, _t):
        for api in (lean, aio):
            status, headers, _ = await api.call("GET", "/v1/kv/app/x", "whatever")
            assert status == 200 and headers["X-Consul-Default-ACL-Policy"] == "allow"
        assert (await aio.call("PUT", "/v1/acl/bootstrap"))[:3:2] == (401, b"ACL support disabled\n")


async def test_acl_default_allow_grants_keys_but_not_acl_management():
    async with fronts(ApiConfig(request_timeout_s=2.0, acl_default_policy="allow")) as (_, _, aio, t):
        assert (await aio.call("PUT", "/v1/kv/free", None, b"v"))[0] == 200
        assert (await aio.call("GET", "/v1/acl/tokens"))[0] == 403
        assert (await aio.call("PUT", "/v1/kv/app/locked", t["write"], b"v"))[0] == 403  # a deny rule still denies


async def test_acl_forwarded_read_carries_the_bearer_token_to_the_leader(serve):
    leader = FakeNode("leader", "127.0.0.1:7001")
    leader.put("k", b"from-leader")
    seen: list = []
    leader_client = await serve(leader, DENY, seen=seen)
    follower = FakeNode("follower", "127.0.0.1:7002", leader=False)
    for client in (leader_client, await serve(follower, DENY)):  # the same token on both, as replication makes it
        assert (await client.put("/v1/acl/bootstrap", json={"BootstrapSecret": "s3cret"})).status == 200
    follower.follow(leader.raft_address, f"127.0.0.1:{leader_client.server.port}")
    client = await serve(follower, DENY)
    seen.clear()
    resp = await client.get("/v1/kv/k", headers={"Authorization": "Bearer nobody"})
    assert resp.status == 403 and seen == []  # refused by the follower itself: nothing forwarded
    resp = await client.get("/v1/kv/k", headers={"Authorization": "Bearer s3cret"})
    assert resp.status == 200 and value(await resp.read()) == b"from-leader"
    [(method, path, headers)] = seen
    assert (method, path, headers["Authorization"]) == ("GET", "/v1/kv/k", "Bearer s3cret")
