"""A real 3-node cluster of processes: replication, forwarding, failover."""

from __future__ import annotations

import base64
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from tests.integration.test_metrics import scrape, total
from tests.support.wait import wait_until


def put(node, key, value, **params):
    return requests.put(f"{node.url}/v1/kv/{key}", data=value, params=params, timeout=10)


def get(node, key, **params):
    return requests.get(f"{node.url}/v1/kv/{key}", params=params, timeout=10)


def test_write_through_a_follower_is_read_on_every_node(shared_cluster):
    follower = shared_cluster.followers()[0]
    r = put(follower, "greeting", b"hello", flags=42)
    assert r.status_code == 200 and r.json() is True
    index = None
    for node in shared_cluster.nodes:
        r = get(node, "greeting")  # default mode: answered by the leader, through forwarding
        assert r.status_code == 200
        [entry] = r.json()
        assert base64.b64decode(entry["Value"]) == b"hello" and entry["Flags"] == 42
        assert r.headers["X-Consul-Index"] == str(entry["ModifyIndex"])
        index = index or entry["ModifyIndex"]
        assert entry["ModifyIndex"] == entry["CreateIndex"] == index
    shared_cluster.wait_applied(index)
    for node in shared_cluster.nodes:  # each node's own copy has the same entry and index
        r = get(node, "greeting", stale="")
        assert r.status_code == 200 and r.json()[0]["ModifyIndex"] == index
        assert r.headers["X-Consul-Effective-Consistency"] == "stale"
        assert get(node, "greeting", raw="").content == b"hello"


def test_a_value_sent_in_pieces_through_a_follower_reads_back_whole_on_every_node(shared_cluster):
    """A follower forwards a 400 KiB entry whole (one frame, over 64 KiB: compressed), the leader
    ships it in 64 KiB pieces (`transmission`), and small frames travel uncompressed: every copy
    must come back byte for byte (NOTES.md, "The wire")."""
    value = os.urandom(400 * 1024)
    follower = shared_cluster.followers()[0]
    r = put(follower, "big/random", value)
    assert r.status_code == 200 and r.json() is True
    index = int(get(follower, "big/random").headers["X-Consul-Index"])
    shared_cluster.wait_applied(index)
    for node in shared_cluster.nodes:
        assert get(node, "big/random", raw="", stale="").content == value


def test_entries_whose_pickle_straddles_a_piece_boundary_reach_every_node(shared_cluster):
    """PySyncObj labels the last piece of an entry by the command's length, not the pickle's: an
    entry whose command ends just below a multiple of 64 KiB (from the second on: the first piece
    is always 'start') got its 'finish' one piece early, and the followers' ticks failed on a
    pickle cut short (NOTES.md, "Entries in pieces"). Values from 128 KiB - 160 bytes up to 128 KiB cover every
    command length within a pickle's overhead below the boundary."""
    leader = shared_cluster.leader()
    log_sizes = {n.node_id: os.path.getsize(n.log_path) for n in shared_cluster.nodes}
    written = {}
    for size in range(128 * 1024 - 160, 128 * 1024 + 1, 3):
        value = os.urandom(size)
        r = put(leader, f"straddle/{size}", value)
        assert r.status_code == 200 and r.json() is True, r.text
        written[f"straddle/{size}"] = value
    index = int(get(leader, f"straddle/{size}").headers["X-Consul-Index"])
    shared_cluster.wait_applied(index)
    for node in shared_cluster.nodes:
        for key, value in written.items():
            assert get(node, key, raw="", stale="").content == value, (node.node_id, key)
    for node in shared_cluster.nodes:  # and no follower ever choked on a piece labelled 'finish' too early
        with open(node.log_path, errors="replace") as f:
            f.seek(log_sizes[node.node_id])
            logged = f.read()
        assert "truncated" not in logged and "Traceback" not in logged, logged[-3000:]


def test_consul_shapes_for_recurse_keys_cas_and_delete(cluster):
    node = cluster.nodes[0]
    for key in ("app/a", "app/b/c", "app/b/d", "other"):
        assert put(node, key, key.encode()).json() is True
    r = get(node, "app/", recurse="1")
    assert [e["Key"] for e in r.json()] == ["app/a", "app/b/c", "app/b/d"]
    assert get(node, "app/", keys="True", separator="/").json() == ["app/a", "app/b/"]
    assert get(node, "", keys="").json() == ["app/a", "app/b/c", "app/b/d", "other"]
    missing = get(node, "nope")
    assert missing.status_code == 404 and missing.content == b"" and int(missing.headers["X-Consul-Index"]) >= 1
    index = get(node, "other").json()[0]["ModifyIndex"]
    assert put(node, "other", b"x", cas=index - 1).json() is False
    assert put(node, "other", b"x", cas=0).json() is False
    assert put(node, "other", b"x", cas=index).json() is True
    assert put(node, "empty", b"").json() is True
    assert get(node, "empty").json()[0]["Value"] is None
    assert requests.delete(f"{node.url}/v1/kv/app/b", params={"recurse": ""}, timeout=10).json() is True
    assert [e["Key"] for e in get(node, "app/", recurse="").json()] == ["app/a"]
    new_index = get(node, "other").json()[0]["ModifyIndex"]
    assert requests.delete(f"{node.url}/v1/kv/other", params={"cas": index}, timeout=10).json() is False
    assert requests.delete(f"{node.url}/v1/kv/other", params={"cas": new_index}, timeout=10).json() is True
    assert get(node, "other").status_code == 404


def test_status_endpoints_answer_like_consul(shared_cluster):
    leader = shared_cluster.leader()
    peers = sorted(n.raft for n in shared_cluster.nodes)
    for node in shared_cluster.nodes:
        assert requests.get(f"{node.url}/v1/status/leader", timeout=5).json() == leader.raft
        assert requests.get(f"{node.url}/v1/status/peers", timeout=5).json() == peers


def test_leader_sigkill_elects_a_new_leader_and_writes_resume(cluster):
    old = cluster.leader()
    assert put(old, "before", b"1").json() is True
    old_term = old.status()["term"]
    killed_at = time.monotonic()
    old.kill()
    survivors = [n for n in cluster.nodes if n is not old]
    new = cluster.leader(among=survivors)
    wait_until("a write acknowledged after the failover", lambda: put(survivors[0], "after", b"2"), timeout=20,
               interval=0.02, explain=cluster.logs, until=lambda r: r.status_code == 200 and r.json() is True)
    first_ok = time.monotonic()
    print(f"failover: leader killed -> first acknowledged write {first_ok - killed_at:.2f}s")
    assert new is not old and new.status()["term"] > old_term
    for node in survivors:
        assert get(node, "before", raw="").content == b"1"
        assert get(node, "after", raw="").content == b"2"
    old.start()  # rejoins as a follower and catches up
    cluster.wait_for("old leader caught up",
                     lambda: (s := old.status()) and s["keys"] == 2 and s["state"] == "follower")


def test_paused_leader_is_replaced_and_steps_down_on_resume(cluster):
    old = cluster.leader()
    old.signal(signal.SIGSTOP)
    try:
        survivors = [n for n in cluster.nodes if n is not old]
        new = cluster.leader(among=survivors)
        assert new is not old
        assert put(new, "during-pause", b"x").json() is True
    finally:
        old.signal(signal.SIGCONT)
    # The resumed old leader must not answer from its old state: the new value, or a 503.
    for params in ({}, {"consistent": ""}):
        r = get(old, "during-pause", **params)
        answer = r.json()[0]["Value"] if r.status_code == 200 else r.status_code
        assert answer in ("eA==", 503), (params, r.status_code, r.text)
    cluster.wait_for("old leader to follow", lambda: (s := old.status()) and s["state"] == "follower"
                     and s["leader"] == new.raft)
    assert get(old, "during-pause", raw="").content == b"x"


def test_leader_cut_off_from_the_majority_steps_down_within_the_election_timeout(cluster):
    leader = cluster.leader()
    followers = [n for n in cluster.nodes if n is not leader]
    for f in followers:
        f.signal(signal.SIGSTOP)
    try:
        stopped_at = time.monotonic()
        cluster.wait_for("the isolated leader to step down",
                         lambda: (s := leader.status()) and s["state"] != "leader", timeout=5)
        print(f"isolated leader stepped down after {time.monotonic() - stopped_at:.2f}s")
        r = put(leader, "while-alone", b"x")  # no quorum: refused within the deadline, never acknowledged
        assert r.status_code == 503 and "Retry-After" in r.headers
    finally:
        for f in followers:
            f.signal(signal.SIGCONT)
    cluster.leader()
    assert get(cluster.nodes[0], "while-alone").status_code == 404


def test_forwarding_is_one_hop_with_a_loop_guard(shared_cluster):
    follower = shared_cluster.followers()[0]
    r = requests.get(f"{follower.url}/v1/kv/loop", headers={"X-Raftkv-Forwarded": "n9"}, timeout=10)
    assert r.status_code == 503 and "already forwarded" in r.text
    before = follower.status()["forwarded"]["ok"]
    assert get(follower, "loop").status_code == 404  # a default read: forwarded once, answered by the leader
    assert follower.status()["forwarded"]["ok"] == before + 1


def test_index_zero_does_not_block(shared_cluster):
    node = shared_cluster.nodes[0]
    assert put(node, "nb", b"1").json() is True
    started = time.monotonic()
    # Held as a blocking query, it would outlast get()'s 10 s client timeout by far: that fails the test.
    r = get(node, "nb", index="0", wait="10m")
    print(f"\nindex=0&wait=10m answered after {time.monotonic() - started:.3f}s")
    assert r.status_code == 200 and r.json()[0]["Value"] == "MQ=="


def test_concurrent_writes_through_every_node_get_their_own_results_from_merged_entries(shared_cluster):
    """The leader merges the batches waiting in one tick, its own and those its followers
    forwarded, into one entry (node.engine.merge); each request must still get its own op's
    result. Every writer creates a key of its own (true) and then tries to create it again
    (false): a slice taken at the wrong place would hand some request the other answer.
    Rounds of writes go on (at most 3) until the leader has merged some entries."""
    leader = shared_cluster.leader()
    before = total(scrape(leader), "raftkv_raft_merged_entries_total")
    wrong: list = []
    deadline = time.monotonic() + 120

    def writer(round_no: int, t: int) -> int:
        node, done = shared_cluster.nodes[t % 3], 0
        while done < 40 and time.monotonic() < deadline:
            key = f"merge/{round_no}/{t}/{done}"
            first, again = put(node, key, b"v", cas=0).json(), put(node, key, b"w", cas=0).json()
            if (first, again) != (True, False):
                wrong.append((key, first, again))
            done += 1
        return done

    written = 0
    for round_no in range(3):
        with ThreadPoolExecutor(24) as pool:
            written += sum(pool.map(writer, [round_no] * 24, range(24)))
        if total(scrape(leader), "raftkv_raft_merged_entries_total") > before:
            break
    assert wrong == [] and written == 24 * 40 * (round_no + 1)
    listed = requests.get(f"{shared_cluster.nodes[1].url}/v1/kv/merge/", params={"recurse": ""}, timeout=10).json()
    assert len(listed) == written and {base64.b64decode(e["Value"]) for e in listed} == {b"v"}
    merged = scrape(leader)
    assert total(merged, "raftkv_raft_merged_entries_total") > before  # the merging path was taken
    assert total(merged, "raftkv_raft_merged_batches_total") >= 2 * total(merged, "raftkv_raft_merged_entries_total")
