"""Fault schedules stay within their time bound, and faults that cannot run here say why."""

import random

from loadtest.chaos.faults import HOLDS, SCHEDULES, Network, mixed_schedule, unsupported
from loadtest.harness.attach import AttachedCluster, AttachedNode


def test_mixed_schedule_plans_every_kind_past_the_duration():
    schedule = mixed_schedule(1800, random.Random(7))
    assert 1800 <= sum(gap + hold for gap, _, hold in schedule) < 1800 + 8 + max(HOLDS.values())
    assert {kind for _, kind, _ in schedule} == set(HOLDS)
    assert len(mixed_schedule(10, random.Random(1))) == 1


def test_every_named_schedule_uses_known_faults():
    for name, schedule in SCHEDULES.items():
        assert {kind for _, kind, _ in schedule} <= set(HOLDS), name


def test_unsupported_faults_say_why():
    full = AttachedNode("n1", "127.0.0.1:1", {"kill": "k", "start": "s", "pause": "p", "resume": "r"})
    bare = AttachedNode("n2", "127.0.0.1:2", {"kill": "k", "start": "s"})
    cluster = AttachedCluster([full, bare])
    net = Network(why_not="needs root")
    assert unsupported("kill-leader", cluster, net) is None
    assert "pause/resume" in unsupported("pause-leader", cluster, net)
    assert unsupported("isolate-leader", cluster, net) == "partitions unavailable: needs root"
    assert "relay" in unsupported("slow-links", cluster, net)
