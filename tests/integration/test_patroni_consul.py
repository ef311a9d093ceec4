"""Patroni's leader election through its own Consul DCS (`patroni.dcs.consul.Consul`, unchanged,
built by `patroni.dcs.get_dcs` from Patroni's config shape) against a real 3-node raftkv
cluster, without PostgreSQL: two members, one takes the leader key, the other sees it as
leader and cannot take it; the leader gives it up (`delete_leader`) and the other takes over;
then that leader stops renewing, its session lapses (Patroni's sessions use
`Behavior: delete`), and the first takes the key back."""

from __future__ import annotations

import time

import pytest

from tests.support.cluster import Cluster

dcs = pytest.importorskip("patroni.dcs", reason="patroni is not installed (pip install -e '.[test]')")
pytest.importorskip("patroni.dcs.consul", reason="patroni's Consul DCS does not import (its consul client or psycopg2)")

SESSION_TTL_S = 10  # Patroni asks Consul for ttl/2: ttl 20 gives raftkv's (and Consul's) smallest TTL, 10 s


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(str(tmp_path_factory.mktemp("patroni"))).start()
    try:
        c.leader()
        yield c
    finally:
        c.stop()


def member(name: str, node) -> dcs.AbstractDCS:
    """A Patroni member's DCS, as `patroni` builds it from its YAML config."""
    config = {"scope": "raftkv-test", "name": name, "ttl": 2 * SESSION_TTL_S, "loop_wait": 1, "retry_timeout": 5,
              "consul": {"host": node.http}}
    return dcs.get_dcs(config)


def leader_name(member_dcs) -> str | None:
    leader = member_dcs.get_cluster().leader
    return None if leader is None else leader.name


def test_patroni_members_elect_hand_over_and_take_over_a_lapsed_leader(cluster):
    a, b = member("pg-a", cluster.nodes[0]), member("pg-b", cluster.nodes[1])
    for m, node in ((a, cluster.nodes[0]), (b, cluster.nodes[1])):
        assert m.touch_member({"conn_url": f"postgres://{node.http}/postgres", "api_url": "http://127.0.0.1:1/patroni",
                               "state": "running", "role": "replica"})
    assert a.attempt_to_acquire_leader() is True
    assert b.attempt_to_acquire_leader() is False
    assert leader_name(b) == "pg-a" and leader_name(a) == "pg-a"
    assert {m.name for m in b.get_cluster().members} == {"pg-a", "pg-b"}

    cluster_view = a.get_cluster()
    assert a.update_leader(cluster_view, None) is True  # the leader's loop: renew, keep the key

    assert a.delete_leader(a.get_cluster().leader) is True  # a planned hand-over
    assert leader_name(b) is None
    assert b.attempt_to_acquire_leader() is True
    assert leader_name(a) == "pg-b" and a.attempt_to_acquire_leader() is False

    # pg-b stops renewing (a stalled leader): its session expires and, with Behavior delete,
    # takes the leader key with it; pg-a, which keeps its own session alive, takes over.
    deadline = time.monotonic() + 4 * SESSION_TTL_S  # the expiry bound, with room for a slow machine
    took_over = False
    while not took_over and time.monotonic() < deadline:
        took_over = a.attempt_to_acquire_leader()
        time.sleep(0.5)
    assert took_over, f"pg-a never took over; the leader key names {leader_name(a)}"
    assert leader_name(b) == "pg-a"
    assert b.attempt_to_acquire_leader() is False  # pg-b comes back with a new session: the key stays pg-a's
    assert leader_name(a) == "pg-a"
