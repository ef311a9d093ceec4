"""The console's search endpoint (api/ui_kv.py) over a fake node: its bounds and the resumption
they promise, ACL filtering (keys the token may not read are neither matched nor looked into),
and bad input answered 400 with one line."""

from __future__ import annotations

import json

import pytest

from api import ui_kv
from api.context import ApiConfig
from tests.api.test_acl import fronts

SEARCH = "/v1/raftkv/ui/search"


async def search(api, secret=None, **params):
    status, _, body = await api.call("GET", SEARCH, secret, **params)
    assert status == 200, body
    return json.loads(body)


@pytest.mark.parametrize("chunk", [256, 3, 1])  # the scan's lock holds: the answers must not depend on them
async def test_search_stops_at_each_bound_says_so_and_resumes_to_every_match_once(chunk, monkeypatch):
    monkeypatch.setattr(ui_kv, "CHUNK_KEYS", chunk)
    async with fronts(ApiConfig(request_timeout_s=2.0)) as (node, _lean, aio, _t):
        for i in range(30):  # s/00..s/29, 100 bytes each; the odd ones contain "needle"
            node.put(f"s/{i:02d}", (b"needle" if i % 2 else b"hay---").ljust(100, b"."), flags=i)
        node.put("t/outside", b"needle")
        doc = await search(aio, prefix="s/", contains="needle", limit="5")
        assert [m["Key"] for m in doc["Matches"]] == ["s/01", "s/03", "s/05", "s/07", "s/09"]
        assert doc["Matches"][0] == {"Key": "s/01", "Flags": 1, "ModifyIndex": doc["Matches"][0]["ModifyIndex"],
                                     "Size": 100, "Session": None}
        assert doc["Truncated"] is True and doc["StoppedBy"] == "limit" and doc["NextKey"] == "s/09"
        assert doc["ScannedKeys"] == 10 and doc["ScannedBytes"] == 1000

        doc = await search(aio, prefix="s/", contains="needle", max_keys="4")
        assert [m["Key"] for m in doc["Matches"]] == ["s/01", "s/03"]
        assert (doc["StoppedBy"], doc["NextKey"], doc["ScannedKeys"]) == ("max_keys", "s/03", 4)

        doc = await search(aio, prefix="s/", contains="needle", max_bytes="250")
        assert [m["Key"] for m in doc["Matches"]] == ["s/01"]
        assert (doc["StoppedBy"], doc["NextKey"], doc["ScannedBytes"]) == ("max_bytes", "s/01", 200)

        found, after, pages = [], None, 0
        while pages < 40:  # resuming from NextKey reaches every match exactly once, and ends
            params = {"prefix": "s/", "contains": "needle", "max_keys": "7", **({"after": after} if after else {})}
            doc = await search(aio, **params)
            found += [m["Key"] for m in doc["Matches"]]
            pages += 1
            if not doc["Truncated"]:
                assert doc["NextKey"] is None and doc["StoppedBy"] is None
                break
            after = doc["NextKey"]
        assert found == [f"s/{i:02d}" for i in range(1, 30, 2)] and pages == 5

        doc = await search(aio, prefix="s/")  # no contains: a bounded key listing, values not read
        assert len(doc["Matches"]) == 30 and doc["ScannedBytes"] == 0 and doc["Truncated"] is False
        assert (await search(aio, prefix="nothing/"))["Matches"] == []


async def test_search_shows_only_keys_the_token_may_read_and_never_reads_the_others():
    async with fronts() as (node, _lean, aio, t):  # deny by default; read: app/; write: app/ but not app/locked
        node.put("app/locked", b"secret needle")
        node.put("app/y", b"a needle")
        node.put("other", b"needle too")
        keys = lambda doc: [m["Key"] for m in doc["Matches"]]  # noqa: E731
        assert keys(await search(aio, t["mgmt"], contains="needle")) == ["app/locked", "app/y", "other"]
        assert keys(await search(aio, t["read"], contains="needle")) == ["app/locked", "app/y"]
        doc = await search(aio, t["write"], contains="needle")
        assert keys(doc) == ["app/y"] and doc["ScannedBytes"] == len(b"1") + len(b"a needle")  # app/x, app/y
        doc = await search(aio, None, contains="needle")  # anonymous: nothing, and no value looked into
        assert doc["Matches"] == [] and doc["ScannedBytes"] == 0
        assert keys(await search(aio, t["write"], prefix="app/")) == ["app/x", "app/y"]
        status, _, body = await aio.call("GET", SEARCH, "no-such-token")
        assert status == 403 and body.decode().strip() == "ACL not found"


@pytest.mark.parametrize(("params", "reason"), [
    ({"limit": "0"}, "invalid limit: 0 is out of range (1 to 1000)"),
    ({"limit": "x"}, "invalid limit: 'x' is not an unsigned integer"),
    ({"max_keys": "10001"}, "invalid max_keys: 10001 is out of range (1 to 10000)"),
    ({"max_bytes": "-1"}, "invalid max_bytes: '-1' is out of range (0 to 2^64-1)"),
    ({"prefix": "a\nb"}, "invalid key: contains a newline or NUL"),
    ({"after": "x" * 513}, "invalid key: 513 bytes, the limit is 512"),
    ({"contains": "é" * 513}, "invalid contains: 1026 bytes, the limit is 1024"),
    ({"stale": "", "consistent": ""}, "Cannot specify ?stale with ?consistent, conflicting semantics."),
])
async def test_search_refuses_bad_input_with_one_line(params, reason):
    async with fronts(ApiConfig(request_timeout_s=2.0)) as (node, _lean, aio, _t):
        status, headers, body = await aio.call("GET", SEARCH, **params)
        assert status == 400 and headers["Content-Type"].startswith("text/plain")
        assert body.decode() == reason + "\n"
