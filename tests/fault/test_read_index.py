"""ReadIndex reads (node/engine/read_index.py) never let a deposed leader answer: a SIGSTOPped
old leader resumed after a new leader committed a write, and a leader cut off by the relay,
answer a linearizable read with an error or the new value, never with the old one."""

from __future__ import annotations

import signal
import threading
import time

import requests

READS = ({"consistent": ""}, {}, {"consistent": ""}, {}, {"consistent": ""}, {})


def read_all(url: str, key: str, results: list) -> list[threading.Thread]:
    """Send every read of READS to `url` at once, each from its own thread (they wait in the
    paused node's accept queue); results: (params, status, body)."""
    def one(params):
        try:
            r = requests.get(f"{url}/v1/kv/{key}", params={**params, "raw": ""}, timeout=30)
            results.append((params, r.status_code, r.content))
        except requests.RequestException as exc:  # the old leader may close on us: no answer is fine
            results.append((params, None, str(exc).encode()))
    threads = [threading.Thread(target=one, args=(p,)) for p in READS]
    for t in threads:
        t.start()
    return threads


def test_a_paused_old_leader_never_answers_a_read_with_the_old_value(cluster):
    old = cluster.leader()
    assert requests.put(f"{old.url}/v1/kv/k", data=b"old", timeout=10).json() is True
    cluster.wait_applied(int(requests.get(f"{old.url}/v1/kv/k", timeout=10).headers["X-Consul-Index"]))
    old.signal(signal.SIGSTOP)
    try:
        new = cluster.leader(timeout=15, among=[n for n in cluster.nodes if n is not old])
        assert requests.put(f"{new.url}/v1/kv/k", data=b"new", timeout=10).json() is True
        results: list = []
        threads = read_all(old.url, "k", results)
        time.sleep(0.5)  # the requests are in the paused node's socket buffers
    finally:
        old.signal(signal.SIGCONT)
    for t in threads:
        t.join(40)
    print(f"\nreads sent to the resumed old leader: {[(p, s, b[:60]) for p, s, b in results]}")
    assert len(results) == len(READS)
    assert all(body != b"old" for _, _, body in results), results
    # Answered: the new value (forwarded, or confirmed after it rejoined) or a refusal.
    assert all(status in (200, 503, None) for _, status, _ in results), results
    assert all(body == b"new" for _, status, body in results if status == 200), results


def test_an_isolated_leader_passes_no_read_and_never_answers_the_old_value(relayed_cluster):
    cluster, relay = relayed_cluster
    old = cluster.leader(timeout=20)  # the fixture does not wait for one
    assert requests.put(f"{old.url}/v1/kv/k", data=b"old", timeout=10).json() is True
    cluster.wait_applied(int(requests.get(f"{old.url}/v1/kv/k", timeout=10).headers["X-Consul-Index"]))
    relay.isolate(old.raft)
    # At once, while it may still think it leads: no majority answers its round.
    r = requests.get(f"{old.url}/v1/kv/k", params={"consistent": "", "raw": ""}, timeout=30)
    assert r.status_code == 503 and r.content != b"old", (r.status_code, r.text)
    new = cluster.leader(timeout=10, among=[n for n in cluster.nodes if n is not old])
    assert requests.put(f"{new.url}/v1/kv/k", data=b"new", timeout=10).json() is True
    results: list = []
    for t in read_all(old.url, "k", results):
        t.join(40)
    assert len(results) == len(READS)
    assert all(status in (503, None) for _, status, _ in results), results
    relay.rejoin(old.raft)
    cluster.leader(timeout=15)
    r = requests.get(f"{old.url}/v1/kv/k", params={"consistent": "", "raw": ""}, timeout=30)
    assert r.status_code == 200 and r.content == b"new", (r.status_code, r.text)
