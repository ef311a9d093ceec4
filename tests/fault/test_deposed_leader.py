"""A leader cut off from its peers steps down and answers the writes it holds at once, with
"outcome unknown", instead of keeping its clients until their own timeouts (then they can go
to another node). The partition is made with the relay, so this runs without root."""

from __future__ import annotations

import requests


def test_an_isolated_leader_answers_its_pending_write_when_it_steps_down(relayed_cluster):
    cluster, relay = relayed_cluster
    leader = cluster.leader(timeout=10)
    assert requests.put(f"{leader.url}/v1/kv/k", data=b"v1", timeout=5).json() is True
    relay.isolate(leader.raft)
    r = requests.put(f"{leader.url}/v1/kv/k", data=b"v2", timeout=30)
    assert r.status_code == 503 and r.text.startswith("outcome unknown"), r.text
    # Answered at the step-down, not by the 5 s request timeout (that one says "not committed within").
    assert "stopped being the leader" in r.text and "not committed within" not in r.text
    print(f"\nthe isolated leader answered its pending write after {r.elapsed.total_seconds():.2f} s")
    # "Unknown" is the honest answer: the entry was held back by the partition, so it
    # commits only if the old leader's term is still current when the link heals. Once the
    # others have elected a new leader it never can.
    new = cluster.leader(timeout=10, among=[n for n in cluster.nodes if n is not leader])
    relay.rejoin(leader.raft)
    cluster.leader(timeout=10)
    assert requests.get(f"{new.url}/v1/kv/k?raw", timeout=5).content == b"v1"
