"""Elections after a leader dies: the survivors' first vote request must reach its peer.

PySyncObj drops a connection that received nothing for 2 s when it next sends on it, and
followers never talk to each other: before our keep-alive (node/engine/transport.py), the first
vote request after a quiet period always died with that idle link, both survivors became
candidates of the same term, and the election needed a second round (term + 2, a whole
election timeout more). Until a follower's poll ended at its election deadline
(node.engine.internals.wake_at_election_deadline), both survivors found their deadlines only at
ticks of the same phase, 50 ms apart: two deadlines in one such window made a split vote, and
this test failed now and then. Split votes can still happen by chance (both timers expire within
a round trip), so the test asks for a clean term + 1 election in most rounds, not all.
"""

from __future__ import annotations

import time

import pytest


# Counts election rounds: in one of two parallel runs, with another test's cluster on the CPU,
# two of the three elections needed a second round.
@pytest.mark.alone
def test_after_a_quiet_spell_a_dead_leader_is_replaced_in_one_election_round(cluster):
    clean, figures = 0, []
    for _ in range(3):
        leader = cluster.leader()
        term = leader.status()["term"]
        time.sleep(2.5)  # not synchronisation: longer than PySyncObj's connectionTimeout, so the follower link is idle
        leader.kill()
        started = time.monotonic()
        survivors = [n for n in cluster.nodes if n is not leader]
        new = cluster.leader(among=survivors)
        figures.append(time.monotonic() - started)
        clean += new.status()["term"] == term + 1
        leader.start()
        cluster.leader()
    print("new leader after", ", ".join(f"{s:.2f}s" for s in figures))
    for n in survivors:  # each survivor logged the change to the leader it follows now, with its term
        with open(n.log_path) as f:
            assert f"leader: {new.raft} in term" in f.read() or n is new, n.node_id
    with open(new.log_path) as f:
        assert f"leader: this node ({new.raft}) in term" in f.read()
    assert clean >= 2, f"only {clean} of 3 elections finished in one round (a lost first vote request?)"
