"""node.membership and the journal's damage report: when a node may vote again."""

import os

from node.codec import ClusterInitOp, ConfigOp, decode, encode
from node.engine.journal import DurableJournal
from node.membership import PeerHello, Quarantine, fresh_verdict, is_fresh
from node.state_machine import KVStateMachine, from_image, to_image

ME, A, B = "h:1", "h:2", "h:3"


def hello(addr, cluster=None, members=(), voters=(), replayed=True):
    return PeerHello(addr, cluster, list(members), list(voters), [], replayed, 0, 0)


def test_a_fresh_node_forms_a_new_cluster_only_when_nobody_knows_it():
    assert fresh_verdict(ME, "n1", [A, B], {A: hello(A), B: hello(B)}, 0)[0] == "form"
    assert fresh_verdict(ME, "n1", [A, B], {A: hello(A)}, 0)[0] == "wait"
    assert fresh_verdict(ME, "n1", [A, B], {A: hello(A)}, 11)[0] == "form"  # a majority, the rest silent 10 s
    assert fresh_verdict(ME, "n1", [A, B], {A: hello(A, replayed=False), B: hello(B)}, 0)[0] == "wait"
    # formed meanwhile by the others, with this node in its configuration but never served: join it
    assert fresh_verdict(ME, "n1", [A, B], {A: hello(A, "c1", [A, B], [ME, A, B]), B: hello(B)}, 0)[0] == "form"


def test_a_fresh_node_refuses_when_a_peer_knows_it_served_or_its_cluster_does_not_have_it():
    verdict, line = fresh_verdict(ME, "n1", [A, B], {A: hello(A, "c1", [ME, A, B], [ME, A, B])}, 0)
    assert verdict == "refuse" and "raftkv members remove n1" in line and "--join" in line and "\n" not in line
    verdict, line = fresh_verdict(ME, "n1", [A, B], {A: hello(A, "c1", [A, B], [A, B])}, 0)
    assert verdict == "refuse" and "not a member of cluster c1" in line
    # an unreplayed peer's lists are incomplete: it cannot clear the node, nor condemn it
    assert fresh_verdict(ME, "n1", [A, B], {A: hello(A, "c1", [ME], [ME, A, B], replayed=False)}, 0)[0] == "wait"


def test_quarantine_ends_with_a_newer_term_or_the_high_entry_again():
    q = Quarantine("damaged", term_before=5, high_index=120, high_term=5)
    assert not q.cured(60, 5, None)  # the old term's own entries are not enough
    assert not q.cured(119, 5, 5)
    assert q.cured(120, 5, 5)
    assert not q.cured(130, 5, 4)  # index 120 now holds another term's entry
    assert q.cured(61, 6, None)


def test_journal_tells_a_torn_tail_from_damage_in_the_middle(tmp_path):
    path = str(tmp_path / "raft.journal")
    j = DurableJournal(path)
    for i in range(1, 101):
        j.add(b"x" * 50, i, 3)
    j._destroy()
    size = os.path.getsize(path)
    with open(path, "r+b") as f:  # a torn last record: cut silently
        f.truncate(size - 10)
    torn = DurableJournal(path)
    assert len(torn) == 99 and torn.damage is None
    torn._destroy()
    with open(path, "r+b") as f:  # 8 bytes flipped a third in
        f.seek(size // 3)
        chunk = f.read(8)
        f.seek(size // 3)
        f.write(bytes(b ^ 0xFF for b in chunk))
    damaged = DurableJournal(path)
    assert damaged.damage is not None and "checksum" in damaged.damage.reason
    assert damaged.damage.kept_index == len(damaged) < 40
    assert (damaged.damage.high_index, damaged.damage.high_term) == (99, 3)


def test_configuration_changes_through_the_state_machine_and_its_snapshot_image():
    sm = KVStateMachine()
    changes = []
    sm.config_listener = lambda: changes.append(tuple(sm.voters))
    assert not sm.apply(1, encode([ConfigOp("add-learner", "h:4", "n4")]))[0].ok  # no configuration yet
    sm.apply(2, encode([ClusterInitOp("c1", ("h:1", "h:2", "h:3"))]))
    assert not sm.apply(3, encode([ClusterInitOp("c2", ("h:9",))]))[0].ok  # the first name wins
    assert sm.apply(4, encode([ConfigOp("add-learner", "h:4", "n4", "w:4")]))[0].ok
    assert not sm.apply(5, encode([ConfigOp("promote", "h:5")]))[0].ok
    assert sm.apply(6, encode([ConfigOp("promote", "h:4")]))[0].ok
    assert sm.apply(7, encode([ConfigOp("remove", "h:2")]))[0].ok
    assert not sm.apply(8, encode([ConfigOp("remove", "h:2")]))[0].ok
    assert sm.voters == ("h:1", "h:3", "h:4") and sm.learners == {} and sm.cluster_id == "c1"
    assert changes == [("h:1", "h:2", "h:3"), ("h:1", "h:2", "h:3"), ("h:1", "h:2", "h:3", "h:4"),
                       ("h:1", "h:3", "h:4")]
    image = to_image(sm)
    back = from_image(image.meta, list(image.entries))
    assert (back.cluster_id, back.voters, back.members) == ("c1", sm.voters, {"h:4": ("n4", "w:4")})
    assert decode(encode([ConfigOp("remove", "h:2")])) == [ConfigOp("remove", "h:2")]


def test_a_forced_reset_before_the_cluster_named_itself_is_not_undone_by_the_naming():
    # Found by test_the_survivor_of_a_lost_majority_...: a cluster killed before its first leader
    # named it; the survivor's reset (--force-new-cluster) was then overridden by the name its
    # next leader proposed from the command-line peers, and the cluster had three voters again.
    sm = KVStateMachine()
    assert sm.apply(1, encode([ConfigOp("reset", "h:2")]))[0].ok
    assert sm.apply(2, encode([ClusterInitOp("c1", ("h:1", "h:2", "h:3"))]))[0].ok
    assert (sm.cluster_id, sm.voters) == ("c1", ("h:2",))


def test_is_fresh_sees_any_trace_of_a_past(tmp_path):
    d = str(tmp_path)
    assert is_fresh(d, "raft.journal", "snapshots")
    open(os.path.join(d, "raft.journal.meta"), "w").close()
    assert not is_fresh(d, "raft.journal", "snapshots")
