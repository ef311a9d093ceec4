"""Unclean paths (`//`, `.`, `..`) are answered as Consul's Go router answers them: 301 to the
cleaned path, query kept, on both HTTP fronts (api/clean_path.py)."""

from __future__ import annotations

import pytest

from api.clean_path import clean
from tests.api.fake_node import FakeNode
from tests.api.test_lean_front import both_fronts, request


@pytest.mark.parametrize("raw,cleaned", [
    ("/v1/kv/app/config", "/v1/kv/app/config"), ("/v1/kv//app/config", "/v1/kv/app/config"),
    ("/v1/kv/app//config/", "/v1/kv/app/config/"), ("/v1/kv/a/./b", "/v1/kv/a/b"), ("/v1/kv/a/../b", "/v1/kv/b"),
    ("//v1/kv/x", "/v1/kv/x"), ("/v1/kv/a/.hidden", "/v1/kv/a/.hidden"), ("/v1/kv/", "/v1/kv/"),
    ("/v1/kv/a/..", "/v1/kv"), ("/", "/"), ("", "/")])
def test_clean_is_gos_path_clean_with_the_trailing_slash_kept(raw, cleaned):
    assert clean(raw) == cleaned


async def test_a_doubled_slash_is_a_301_to_the_clean_path_on_both_fronts_and_changes_nothing():
    def setup(node: FakeNode):
        node.put("app/config", b"v")

    data = (request("GET", "/v1/kv//app/config?raw") + request("PUT", "/v1/kv//app/other", b"x")
            + request("GET", "/v1/kv/app/./config") + request("GET", "/v1/kv/app/config?raw"))
    for node, answers in await both_fronts(data, 4, setup):
        (s1, h1, _), (s2, h2, _), (s3, h3, _), (s4, _, b4) = answers
        assert (s1, h1["Location"]) == (301, "/v1/kv/app/config?raw")
        assert (s2, h2["Location"]) == (301, "/v1/kv/app/other")
        assert (s3, h3["Location"]) == (301, "/v1/kv/app/config")
        assert (s4, b4) == (200, b"v")  # the connection goes on; the redirected PUT wrote nothing
        assert node.state.get("app/other") is None and node.state.get("/app/other") is None
