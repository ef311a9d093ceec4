"""Sessions and locks in the state machine: Consul's semantics, invalidation, snapshots, replay."""

import msgpack
import pytest

from node.codec import DeleteOp, LockOp, SessionOp, SetOp, TxnItem, TxnOp, decode, encode
from node.state_machine import SESSIONS_WATCH_KEY, KVStateMachine, from_image, to_image
from snapshots import format as fmt


def create(sid, behavior="release", delay_ns=15_000_000_000, ttl="10s"):
    return SessionOp("create", {"id": sid, "name": "n-" + sid, "node": "node1", "lock_delay_ns": delay_ns,
                                "behavior": behavior, "ttl": ttl, "ttl_ns": 10_000_000_000,
                                "node_checks": ["serfHealth"]})


class Log:
    """A state machine fed one op per entry, recording every session event it reports."""

    def __init__(self):
        self.sm = KVStateMachine()
        self.index = 1
        self.events = []
        self.changed = []
        self.sm.session_listener = lambda kind, s, keys: self.events.append((kind, s.id if s else None, keys))
        self.sm.listener = lambda keys, index: self.changed.append(keys)
        self.payloads = []

    def apply(self, op):
        self.index += 1
        payload = encode([op])
        self.payloads.append(payload)
        [result] = self.sm.apply(self.index, payload)
        return result


def test_sessions_acquire_counts_lock_index_and_holder_reacquire_does_not():
    log = Log()
    assert log.apply(create("s1")).ok and log.apply(create("s2")).ok
    assert log.apply(LockOp("k", b"a", 0, "s1", True)).ok
    assert log.sm.get("k").lock_index == 1 and log.sm.get("k").session == "s1"
    assert log.apply(LockOp("k", b"b", 3, "s1", True)).ok  # the holder: value updated, same token
    entry = log.sm.get("k")
    assert (entry.value, entry.flags, entry.lock_index, entry.session) == (b"b", 3, 1, "s1")
    assert not log.apply(LockOp("k", b"c", 0, "s2", True)).ok  # held by another: false, unchanged
    assert log.sm.get("k").value == b"b"
    assert not log.apply(LockOp("k", b"c", 0, "s2", False)).ok  # release by a non-holder
    assert log.apply(LockOp("k", b"r", 0, "s1", False)).ok
    entry = log.sm.get("k")
    assert (entry.value, entry.lock_index, entry.session) == (b"r", 1, None)
    assert log.apply(LockOp("k", b"x", 0, "s2", True)).ok and log.sm.get("k").lock_index == 2


def test_sessions_lock_with_an_unknown_or_missing_session_is_an_error():
    log = Log()
    result = log.apply(LockOp("k", b"a", 0, "nope", True))
    assert not result.ok and result.error == 'invalid session "nope"' and log.sm.get("k") is None
    assert log.apply(LockOp("k", b"a", 0, "", False)).error == "missing session"


def test_sessions_plain_put_on_a_locked_key_writes_and_keeps_the_lock():
    log = Log()
    log.apply(create("s1"))
    log.apply(LockOp("k", b"a", 0, "s1", True))
    assert log.apply(SetOp("k", b"plain")).ok
    entry = log.sm.get("k")
    assert (entry.value, entry.lock_index, entry.session) == (b"plain", 1, "s1")


@pytest.mark.parametrize("action", ["destroy", "invalidate"])
def test_sessions_end_releases_held_keys_with_release_behavior(action):
    log = Log()
    log.apply(create("s1", delay_ns=5_000_000_000))
    log.apply(LockOp("a", b"1", 0, "s1", True))
    log.apply(LockOp("b", b"2", 0, "s1", True))
    log.apply(SetOp("c", b"3"))
    assert log.apply(SessionOp(action, {"id": "s1"})).ok
    assert log.sm.sessions.get("s1") is None and not log.sm.sessions.held
    for key, value in (("a", b"1"), ("b", b"2")):
        entry = log.sm.get(key)
        assert (entry.value, entry.session, entry.lock_index, entry.modify_index) == (value, None, 1, log.index)
    assert log.sm.get("c").modify_index < log.index
    assert log.events[-1] == ("ended", "s1", ("a", "b"))
    assert set(log.changed[-1]) == {"a", "b", SESSIONS_WATCH_KEY}
    assert log.apply(SessionOp(action, {"id": "s1"})).ok  # idempotent: gone already
    assert log.events[-1][0] == "ended" and len(log.events) == 2


def test_sessions_end_deletes_held_keys_with_delete_behavior():
    log = Log()
    log.apply(create("s1", behavior="delete"))
    log.apply(LockOp("a", b"1", 0, "s1", True))
    log.apply(SetOp("b", b"2"))
    log.apply(SessionOp("invalidate", {"id": "s1"}))
    assert log.sm.get("a") is None and log.sm.get("b") is not None
    assert log.sm.key_index("a") == log.index  # the delete's tombstone: watchers of the key wake


def test_sessions_deleted_or_rewritten_key_is_no_longer_held():
    log = Log()
    log.apply(create("s1", behavior="delete"))
    log.apply(LockOp("a", b"1", 0, "s1", True))
    log.apply(DeleteOp("a"))
    log.apply(SetOp("a", b"fresh"))
    log.apply(SessionOp("destroy", {"id": "s1"}))
    assert log.sm.get("a").value == b"fresh"  # not deleted: the session no longer held it


def test_sessions_create_refuses_a_duplicate_id_and_a_bad_behavior():
    log = Log()
    assert log.apply(create("s1")).ok
    assert "already in use" in log.apply(create("s1")).error
    assert log.apply(create("s2", behavior="explode")).error == "Invalid Behavior setting 'explode'"
    assert log.apply(SessionOp("create", {"id": "s3"})).error.startswith("malformed session change")
    assert sorted(log.sm.sessions.sessions) == ["s1"]


def test_sessions_txn_lock_unlock_and_check_session():
    log = Log()
    log.apply(create("s1"))
    log.apply(create("s2"))
    ok = log.apply(TxnOp((TxnItem("lock", "k", b"v", 0, 0, "s1"), TxnItem("check-session", "k", session="s1"))))
    assert ok.ok and log.sm.get("k").session == "s1" and log.sm.get("k").lock_index == 1
    refused = log.apply(TxnOp((TxnItem("set", "other", b"x"), TxnItem("lock", "k", b"w", 0, 0, "s2"))))
    assert refused.errors == ((1, 'failed to lock key "k", lock is already held'),)
    assert log.sm.get("other") is None  # rolled back
    refused = log.apply(TxnOp((TxnItem("check-session", "k", session="s2"),)))
    assert refused.errors == ((0, 'failed session check for key "k", current session "s1" != "s2"'),)
    refused = log.apply(TxnOp((TxnItem("unlock", "k", session="s2"),)))
    assert "lock isn't held, or is held by another session" in refused.errors[0][1]
    assert log.apply(TxnOp((TxnItem("unlock", "k", b"u", 0, 0, "s1"),))).ok
    assert log.sm.get("k").session is None and log.sm.get("k").value == b"u"
    assert log.apply(TxnOp((TxnItem("lock", "k", b"", 0, 0, "gone"),))).errors == ((0, 'invalid session "gone"'),)


def test_sessions_txn_items_without_a_session_encode_as_before():
    payload = encode([TxnOp((TxnItem("set", "k", b"v"),))])
    assert msgpack.unpackb(payload)[1][0][1] == [["set", "k", b"v", 0, 0]]
    assert decode(encode([TxnOp((TxnItem("lock", "k", b"v", 0, 0, "s"),))]))[0].items[0].session == "s"


def roundtrip(sm, tmp_path):
    header = fmt.SnapshotHeader(index=sm.applied_index, term=1, key_count=len(sm.entries), created_unix=0.0)
    fmt.write(str(tmp_path / "s"), header, to_image(sm))
    _, meta, entries = fmt.read(str(tmp_path / "s"))
    return from_image(meta, entries)


def test_sessions_and_locks_survive_a_snapshot_roundtrip(tmp_path):
    log = Log()
    log.apply(create("s1", behavior="delete"))
    log.apply(create("s2"))
    log.apply(LockOp("a", b"1", 0, "s1", True))
    log.apply(SetOp("b", b"2"))
    back = roundtrip(log.sm, tmp_path)
    assert back.sessions.sessions == log.sm.sessions.sessions and back.sessions.index == log.sm.sessions.index
    assert dict(back.entries) == dict(log.sm.entries) and back.sessions.held == {"s1": {"a"}}
    back.apply(log.index + 1, encode([SessionOp("invalidate", {"id": "s1"})]))  # held keys rebuilt: deleted
    assert back.get("a") is None


def test_sessions_replay_identically_on_every_node(tmp_path):
    log = Log()
    for op in (create("s1"), create("s2", behavior="delete"), LockOp("a", b"1", 0, "s1", True),
               LockOp("b", b"2", 0, "s2", True), TxnOp((TxnItem("lock", "c", b"3", 0, 0, "s1"),)),
               SessionOp("invalidate", {"id": "s2"}), LockOp("a", b"4", 0, "s1", False)):
        log.apply(op)
    replica = KVStateMachine()
    for i, payload in enumerate(log.payloads):
        replica.apply(i + 2, payload)
    assert to_image(replica).meta == to_image(log.sm).meta
    assert list(to_image(replica).entries) == list(to_image(log.sm).entries)
    assert roundtrip(replica, tmp_path).sessions.held == {"s1": {"c"}}


def test_sessions_snapshot_with_a_key_held_by_an_unknown_session_is_refused(tmp_path):
    log = Log()
    log.apply(create("s1"))
    log.apply(LockOp("a", b"1", 0, "s1", True))
    image = to_image(log.sm)
    image.meta["sessions"]["sessions"] = []
    header = fmt.SnapshotHeader(index=log.index, term=1, key_count=1, created_unix=0.0)
    fmt.write(str(tmp_path / "s"), header, image)
    _, meta, entries = fmt.read(str(tmp_path / "s"))
    with pytest.raises(fmt.SnapshotCorrupt, match="unknown session"):
        from_image(meta, entries)


def test_sessions_absent_from_an_image_until_first_used():
    log = Log()
    log.apply(SetOp("k", b"v"))
    assert "sessions" not in to_image(log.sm).meta
    assert [len(r) for r in to_image(log.sm).entries] == [6]
