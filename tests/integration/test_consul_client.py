"""The unmodified py-consul client from PyPI drives a real 3-node cluster through every node."""

from __future__ import annotations

import base64
import time
from concurrent.futures import Future, ThreadPoolExecutor

import consul
import pytest

from tests.support.wait import wait_until


@pytest.fixture(scope="module")
def cluster(shared_cluster):
    """The tests here write keys of their own and leave the nodes running: one cluster for all."""
    return shared_cluster


def client(node) -> consul.Consul:
    host, port = node.http.rsplit(":", 1)
    return consul.Consul(host=host, port=int(port))


def watchers(cluster) -> int:
    """Blocking queries held in the cluster (a forwarded one is held by the leader)."""
    return sum((n.status() or {}).get("watchers", 0) for n in cluster.nodes)


def held(cluster, pool: ThreadPoolExecutor, get, *args, **kwargs) -> Future:
    """Send a blocking query from the pool; return its future once a node holds it (then a change
    made now must wake it: the query is not answered by an index that was already past)."""
    query = pool.submit(get, *args, **kwargs)
    wait_until("the blocking query to be held", lambda: watchers(cluster), 20, until=lambda n: n >= 1 or query.done())
    assert not query.done(), f"answered with no change: {query.result()}"
    return query


def test_py_consul_put_get_delete_flags_cas_and_empty_values_through_every_node(cluster):
    for i, node in enumerate(cluster.nodes):
        c = client(node)
        key = f"pyc/{i}/item"
        assert c.kv.put(key, "bar", flags=7) is True
        index, data = c.kv.get(key)
        assert data["Value"] == b"bar" and data["Flags"] == 7 and int(index) == data["ModifyIndex"]
        assert c.kv.put(key, "baz", cas=data["ModifyIndex"] - 1) is False
        assert c.kv.put(key, "baz", cas=data["ModifyIndex"]) is True
        assert c.kv.put(f"pyc/{i}/new", "x", cas=0) is True
        assert c.kv.put(f"pyc/{i}/new", "y", cas=0) is False
        assert c.kv.put(f"pyc/{i}/missing", "y", cas=50) is False
        assert c.kv.put(f"pyc/{i}/empty", "") is True
        assert c.kv.get(f"pyc/{i}/empty")[1]["Value"] is None
        assert c.kv.delete(key) is True
        index, data = c.kv.get(key)
        assert data is None and int(index) >= 1


def test_py_consul_recurse_keys_separator_and_consistency_modes(cluster):
    c0 = client(cluster.nodes[0])
    for key in ("foo/", "foo/bar1", "foo/bar2", "foo/bar3", "base/foo", "base/base/foo", "bar"):
        assert c0.kv.put(key, key) is True
    for node in cluster.nodes:
        c = client(node)
        _, entries = c.kv.get("foo/", recurse=True)
        assert [e["Key"] for e in entries] == ["foo/", "foo/bar1", "foo/bar2", "foo/bar3"]
        assert c.kv.get("base/", keys=True, separator="/")[1] == ["base/base/", "base/foo"]
        assert c.kv.get("foo/bar2", consistency="consistent")[1]["Value"] == b"foo/bar2"
        # stale reads come from the node's own copy: wait until it has applied the writes
        wait_until(f"{node.node_id} to apply the writes", lambda c=c: c.kv.get("bar", consistency="stale")[1], 10)
        assert c.kv.get("bar", consistency="stale")[1]["Value"] == b"bar"
    assert c0.kv.delete("foo/", recurse=True) is True
    assert c0.kv.get("foo/", recurse=True)[1] is None


@pytest.mark.parametrize("mode", ["default", "consistent", "stale"])
def test_py_consul_blocking_query_wakes_on_change_and_times_out_without_one(cluster, mode):
    watcher = client(cluster.nodes[1])
    writer = client(cluster.nodes[2])
    consistency = None if mode == "default" else mode
    assert writer.kv.put(f"watch/{mode}", "v1") is True
    cluster.wait_applied(max(int(client(n).kv.get(f"watch/{mode}")[0]) for n in cluster.nodes[:1]))
    index, data = watcher.kv.get(f"watch/{mode}", consistency=consistency)
    started = time.monotonic()
    same_index, _ = watcher.kv.get(f"watch/{mode}", index=index, wait="300ms", consistency=consistency)
    assert same_index == index and time.monotonic() - started >= 0.29  # no change: held until the wait ends
    pool = ThreadPoolExecutor(1)
    try:
        # A 10-minute wait: a query that the write did not wake is still held when the wait below gives up.
        query = held(cluster, pool, watcher.kv.get, f"watch/{mode}", index=index, wait="10m", consistency=consistency)
        started = time.monotonic()
        assert writer.kv.put(f"watch/{mode}", "v2") is True
        wait_until("the blocking query to be woken by the write", query.done, timeout=60)
        woke_after = time.monotonic() - started
        new_index, data = query.result()
    finally:
        pool.shutdown(wait=False)  # after a failure the query ends when the cluster stops
    print(f"\n{mode}: blocking query answered {woke_after:.3f}s after the write was sent")
    assert int(new_index) > int(index) and data["Value"] == b"v2"


def test_py_consul_blocking_query_on_a_prefix_wakes_on_delete(cluster):
    c = client(cluster.nodes[0])
    assert c.kv.put("tree/a", "1") is True and c.kv.put("tree/b", "2") is True
    index, _ = c.kv.get("tree/", recurse=True)
    pool = ThreadPoolExecutor(1)
    try:  # as above: a 10-minute wait that only the delete can end within the test
        query = held(cluster, pool, c.kv.get, "tree/", recurse=True, index=index, wait="10m")
        assert client(cluster.nodes[1]).kv.delete("tree/b") is True
        wait_until("the prefix query to be woken by the delete", query.done, timeout=60)
        new_index, entries = query.result()
    finally:
        pool.shutdown(wait=False)
    assert int(new_index) > int(index) and [e["Key"] for e in entries] == ["tree/a"]


def test_py_consul_txn_applies_atomically_or_reports_409(cluster):
    c = client(cluster.nodes[1])
    b64 = lambda s: base64.b64encode(s.encode()).decode()  # noqa: E731
    result = c.txn.put([
        {"KV": {"Verb": "set", "Key": "txn/a", "Value": b64("1")}},
        {"KV": {"Verb": "set", "Key": "txn/b", "Value": b64("2"), "Flags": 3}},
        {"KV": {"Verb": "get", "Key": "txn/a"}},
    ])
    assert result["Errors"] is None and len(result["Results"]) == 3
    a = result["Results"][2]["KV"]
    assert base64.b64decode(a["Value"]) == b"1" and result["Results"][1]["KV"]["Flags"] == 3
    assert result["Results"][0]["KV"]["Value"] is None
    with pytest.raises(consul.ConsulException) as failed:
        c.txn.put([
            {"KV": {"Verb": "set", "Key": "txn/c", "Value": b64("3")}},
            {"KV": {"Verb": "cas", "Key": "txn/a", "Value": b64("x"), "Index": a["ModifyIndex"] + 100}},
        ])
    assert "409" in str(failed.value)
    assert c.kv.get("txn/c")[1] is None, "a rolled-back transaction changed nothing"
    result = c.txn.put([
        {"KV": {"Verb": "check-index", "Key": "txn/a", "Index": a["ModifyIndex"]}},
        {"KV": {"Verb": "check-not-exists", "Key": "txn/c"}},
        {"KV": {"Verb": "delete-cas", "Key": "txn/a", "Index": a["ModifyIndex"]}},
        {"KV": {"Verb": "get-tree", "Key": "txn/"}},
        {"KV": {"Verb": "delete-tree", "Key": "txn/"}},
    ])
    assert result["Errors"] is None
    assert [r["KV"]["Key"] for r in result["Results"]] == ["txn/a", "txn/b"]
    assert c.kv.get("txn/", recurse=True)[1] is None


def test_a_key_sent_with_a_leading_slash_is_found_after_consuls_301(cluster):
    """Clients that send `/v1/kv//app/config` for the key "/app/config" (several Go clients do;
    py-consul refuses such keys itself) follow the 301 Consul's router answers to the cleaned
    path, and find "app/config" (issue 13)."""
    import requests

    node = cluster.nodes[1]
    assert client(cluster.nodes[0]).kv.put("app/slash", "v") is True
    r = requests.get(f"{node.url}/v1/kv//app/slash", params={"raw": ""}, allow_redirects=False, timeout=10)
    assert (r.status_code, r.headers["Location"]) == (301, "/v1/kv/app/slash?raw=")
    followed = requests.get(f"{node.url}/v1/kv//app/slash", params={"raw": ""}, timeout=10)
    assert followed.status_code == 200 and followed.content == b"v" and followed.history[0].status_code == 301
