"""The ReadIndex protocol's rules (node/engine/read_index.py), driven message by message on a
stand-in for the few SyncObj fields it reads; tests/unit/engine/test_pysyncobj_pins.py runs
it on a real SyncObj, tests/fault/test_read_index.py and the linearizability tests on clusters."""

from __future__ import annotations

import pytest
from pysyncobj.node import TCPNode

from node.engine import read_index
from node.engine.read_index import ANSWER, ASK, PING, PONG, ReadIndex
from node.errors import NoLeaderError

A, B, C, D = (TCPNode(f"127.0.0.1:{p}") for p in (7001, 7002, 7003, 7004))


class Notifier:
    def notify(self) -> None:
        pass


class FakeSyncObj:
    """The fields read_index reads, by their PySyncObj names."""

    def __init__(self, voters=(B, C)) -> None:
        self.leader, self.raftCurrentTerm, self.raftCommitIndex, self.raftLastApplied = True, 3, 10, 10
        self._SyncObj__otherNodes = set(voters)
        self._SyncObj__noopIDx = 9
        self._SyncObj__pipeNotifier = Notifier()
        self.raft_leader = A

    def _isLeader(self) -> bool:
        return self.leader

    def _getLeader(self):
        return self.raft_leader


@pytest.fixture
def env():
    so, sent, done = FakeSyncObj(), [], []  # type: ignore[var-annotated]
    ri = ReadIndex(so, lambda link, message: sent.append((link, message)))
    return so, ri, sent, done


def pings(sent):
    return [(link, m) for link, m in sent if m["type"] == PING]


def test_a_round_needs_a_majority_of_pongs_with_its_term_and_seq(env):
    so, ri, sent, done = env
    ri.request(done.append)
    ri.tick()
    (_, ping), _ = pings(sent)
    assert {link for link, _ in pings(sent)} == {B, C} and ping["term"] == 3
    ri.on_message(B, {"type": PONG, "seq": ping["seq"] - 1, "term": 3})  # an answer to an older ping
    ri.on_message(B, {"type": PONG, "seq": ping["seq"], "term": 2})  # from an older term
    ri.on_message(D, {"type": PONG, "seq": ping["seq"], "term": 3})  # not a voter
    ri.tick()
    assert done == []
    ri.on_message(C, {"type": PONG, "seq": ping["seq"], "term": 3})
    ri.tick()
    assert done == [None] and ri.confirmed == 1


def test_the_read_waits_until_the_index_is_applied(env):
    so, ri, sent, done = env
    so.raftLastApplied = 8
    ri.request(done.append)
    ri.tick()
    ri.on_message(B, {"type": PONG, "seq": pings(sent)[0][1]["seq"], "term": 3})
    ri.tick()
    assert done == []
    so.raftLastApplied = 10
    ri.tick()
    assert done == [None]


def test_no_round_before_the_leaders_noop_is_committed(env):
    so, ri, sent, done = env
    so._SyncObj__noopIDx = 11
    ri.request(done.append)
    ri.tick()
    assert pings(sent) == []
    so.raftCommitIndex = 11
    ri.tick()
    assert len(pings(sent)) == 2


def test_a_newer_term_or_losing_leadership_fails_the_round(env):
    so, ri, sent, done = env
    ri.request(done.append)
    ri.tick()
    ri.on_message(B, {"type": PONG, "seq": pings(sent)[0][1]["seq"], "term": 4})
    assert len(done) == 1 and isinstance(done[0], NoLeaderError)
    ri.request(done.append)
    ri.tick()
    so.leader = False
    ri.tick()
    assert len(done) == 2 and isinstance(done[1], NoLeaderError)


def test_an_unconfirmed_round_is_sent_again_with_a_new_seq(env, monkeypatch):
    so, ri, sent, done = env
    ri.request(done.append)
    ri.tick()
    first = pings(sent)[0][1]["seq"]
    monkeypatch.setattr(read_index, "RETRY_S", 0.0)
    ri.tick()
    second = pings(sent)[-1][1]["seq"]
    assert second > first and ri.rounds == 2
    ri.on_message(B, {"type": PONG, "seq": first, "term": 3})  # the first round's answer is too old now
    assert done == []
    ri.on_message(B, {"type": PONG, "seq": second, "term": 3})
    ri.tick()
    assert done == [None]


def test_reads_arriving_during_a_round_wait_for_the_next_one(env):
    so, ri, sent, done = env
    ri.request(lambda e: done.append(("first", e)))
    ri.tick()
    ri.request(lambda e: done.append(("second", e)))
    ri.tick()
    seq = pings(sent)[0][1]["seq"]
    ri.on_message(B, {"type": PONG, "seq": seq, "term": 3})
    ri.tick()
    assert done == [("first", None)] and len(pings(sent)) == 4  # the next round left at once
    ri.on_message(C, {"type": PONG, "seq": pings(sent)[-1][1]["seq"], "term": 3})
    ri.tick()
    assert done == [("first", None), ("second", None)]


def test_a_follower_asks_the_leader_and_waits_to_apply_its_answer(env):
    so, ri, sent, done = env
    so.leader, so.raftLastApplied = False, 5
    ri.request(done.append)
    ri.tick()
    (link, ask), = sent
    assert link == A and ask["type"] == ASK
    ri.on_message(B, {"type": ANSWER, "id": ask["id"], "index": 7})  # not from whom we asked
    ri.on_message(A, {"type": ANSWER, "id": ask["id"], "index": 7})
    ri.tick()
    assert done == []
    so.raftLastApplied = 7
    ri.tick()
    assert done == [None]


def test_a_follower_fails_its_ask_when_the_leader_changes_or_refuses(env):
    so, ri, sent, done = env
    so.leader = False
    ri.request(done.append)
    ri.tick()
    so.raft_leader = B
    ri.tick()
    assert len(done) == 1 and isinstance(done[0], NoLeaderError)
    ri.request(done.append)
    ri.tick()
    ri.on_message(B, {"type": ANSWER, "id": sent[-1][1]["id"], "error": "not the leader"})
    assert len(done) == 2 and isinstance(done[1], NoLeaderError)


def test_the_leader_serves_an_ask_in_its_round_and_a_follower_refuses_one(env):
    so, ri, sent, done = env
    ri.on_message(C, {"type": ASK, "id": 5})
    seq = pings(sent)[0][1]["seq"]
    ri.on_message(B, {"type": PONG, "seq": seq, "term": 3})
    assert sent[-1] == (C, {"type": ANSWER, "id": 5, "index": 10})
    so.leader = False
    ri.on_message(C, {"type": ASK, "id": 6})
    assert sent[-1] == (C, {"type": ANSWER, "id": 6, "error": "not the leader"})
    ri.on_message(C, {"type": PING, "term": 3, "seq": 42})
    assert sent[-1] == (C, {"type": PONG, "seq": 42, "term": 3})


def test_a_follower_asks_again_until_answered_and_takes_the_first_answer(env, monkeypatch):
    so, ri, sent, done = env
    so.leader, so.raftLastApplied = False, 9
    ri.request(done.append)
    ri.tick()
    monkeypatch.setattr(read_index, "RETRY_S", 0.0)
    ri.tick()
    asks = [m for _, m in sent if m["type"] == ASK]
    assert len(asks) == 2 and asks[0]["id"] == asks[1]["id"]
    ri.on_message(A, {"type": ANSWER, "id": asks[0]["id"], "index": 9})
    ri.on_message(A, {"type": ANSWER, "id": asks[0]["id"], "index": 9})
    ri.tick()
    assert done == [None]


def test_an_ask_in_the_leaders_term_is_answered_at_once_when_leader_and_asker_are_a_majority(env):
    so, ri, sent, done = env
    ri.on_message(C, {"type": ASK, "id": 5, "term": 3})
    assert sent == [(C, {"type": ANSWER, "id": 5, "index": 10})]  # no ping: the ask was the pong
    assert ri.asks_at_once == 1 and ri.rounds == 0


@pytest.mark.parametrize("why", ["older term", "learner", "five voters", "noop not committed"])
def test_an_ask_that_does_not_prove_a_majority_waits_for_a_round(env, why):
    so, ri, sent, done = env
    asker, term = C, 3
    if why == "older term":
        term = 2
    elif why == "learner":
        asker = D
    elif why == "five voters":  # the leader and one asker are 2 of 5
        so._SyncObj__otherNodes = {B, C, D, TCPNode("127.0.0.1:7005")}
    else:
        so._SyncObj__noopIDx = 11
    ri.on_message(asker, {"type": ASK, "id": 5, "term": term})
    assert not [m for _, m in sent if m["type"] == ANSWER] and ri.asks_at_once == 0
    if why == "noop not committed":
        assert pings(sent) == []
        return
    seq = pings(sent)[0][1]["seq"]
    for voter in so._SyncObj__otherNodes:
        ri.on_message(voter, {"type": PONG, "seq": seq, "term": 3})
    assert sent[-1] == (asker, {"type": ANSWER, "id": 5, "index": 10})


def test_a_followers_ask_carries_its_term_and_so_does_its_retry(env, monkeypatch):
    so, ri, sent, done = env
    so.leader = False
    ri.request(done.append)
    ri.tick()
    so.raftCurrentTerm = 4
    monkeypatch.setattr(read_index, "RETRY_S", 0.0)
    ri.tick()
    assert [m["term"] for _, m in sent if m["type"] == ASK] == [3, 4]
