import msgpack
import pytest

from node import codec
from node.codec import CodecError, DeleteOp, SetMemberOp, SetOp, TxnItem, TxnOp, decode, encode
from node.state_machine import KVEntry, KVStateMachine, OpResult


def apply(sm, index, *ops):
    return sm.apply(index, encode(list(ops)))


def test_state_machine_set_records_raft_index_as_create_and_modify_index():
    sm = KVStateMachine()
    assert apply(sm, 5, SetOp("a", b"1")) == [OpResult(True)]
    assert sm.get("a") == KVEntry(b"1", 0, 5, 5, 0)
    apply(sm, 9, SetOp("a", b"2", flags=7))
    assert sm.get("a") == KVEntry(b"2", 7, 5, 9, 0)
    assert sm.applied_index == 9 and sm.kv_index == 9


def test_state_machine_cas_zero_creates_only_when_absent():
    sm = KVStateMachine()
    assert apply(sm, 2, SetOp("k", b"x", cas=0)) == [OpResult(True)]
    assert apply(sm, 3, SetOp("k", b"y", cas=0)) == [OpResult(False)]
    assert sm.get("k").value == b"x"


def test_state_machine_cas_index_must_match_modify_index():
    sm = KVStateMachine()
    apply(sm, 2, SetOp("k", b"x"))
    assert apply(sm, 3, SetOp("k", b"y", cas=1)) == [OpResult(False)]
    assert apply(sm, 4, SetOp("missing", b"y", cas=50)) == [OpResult(False)]
    assert apply(sm, 5, SetOp("k", b"y", cas=2)) == [OpResult(True)]
    assert sm.get("k") == KVEntry(b"y", 0, 2, 5, 0)
    assert sm.get("missing") is None


def test_state_machine_failed_cas_changes_no_index():
    sm = KVStateMachine()
    apply(sm, 2, SetOp("k", b"x"))
    apply(sm, 3, SetOp("k", b"y", cas=99))
    assert sm.kv_index == 2 and sm.applied_index == 3


def test_state_machine_delete_with_cas_and_recurse():
    sm = KVStateMachine()
    apply(sm, 2, SetOp("a/1", b""), SetOp("a/2", b""), SetOp("ab", b""), SetOp("b", b""))
    assert apply(sm, 3, DeleteOp("b", cas=1)) == [OpResult(False)]
    assert apply(sm, 4, DeleteOp("b", cas=2)) == [OpResult(True)]
    assert apply(sm, 5, DeleteOp("a/", recurse=True)) == [OpResult(True)]
    assert [k for k, _ in sm.items_with_prefix("")] == ["ab"]
    assert sm.kv_index == 5
    assert apply(sm, 6, DeleteOp("nothing")) == [OpResult(True)]
    assert sm.kv_index == 5  # deleting an absent key changes nothing, as in Consul


def test_state_machine_batch_ops_apply_in_order_and_share_the_index():
    sm = KVStateMachine()
    results = apply(sm, 7, SetOp("k", b"1", cas=0), SetOp("k", b"2", cas=0), SetOp("j", b"3"))
    assert results == [OpResult(True), OpResult(False), OpResult(True)]
    assert sm.get("k").modify_index == sm.get("j").modify_index == 7


def test_state_machine_is_deterministic_across_replicas():
    log = [encode([SetOp(f"k{i % 17}", bytes([i % 256]) * (i % 5), i % 3, None if i % 4 else 0)])
           for i in range(500)]
    log += [encode([DeleteOp(f"k{i}", cas=None)]) for i in range(0, 17, 3)]
    a, b = KVStateMachine(), KVStateMachine()
    for index, payload in enumerate(log, start=2):
        a.apply(index, payload)
        b.apply(index, payload)
    assert dict(a.entries) == dict(b.entries) and a.kv_index == b.kv_index


def test_state_machine_never_raises_on_an_undecodable_entry():
    sm = KVStateMachine()
    results = sm.apply(3, b"\xc1garbage")
    assert results[0].ok is False and "undecodable" in results[0].error
    future = msgpack.packb([codec.CODEC_VERSION + 1, []])
    assert "unsupported codec version" in sm.apply(4, future)[0].error
    assert sm.applied_index == 4 and len(sm.entries) == 0


def test_state_machine_records_members():
    sm = KVStateMachine()
    apply(sm, 2, SetMemberOp("127.0.0.1:7001", "127.0.0.1:8501", "n1"))
    assert sm.members == {"127.0.0.1:7001": ("n1", "127.0.0.1:8501")}


def test_codec_roundtrip():
    ops = [SetOp("k", b"\x00\xff", 3, 0), DeleteOp("p/", True, None), SetMemberOp("a:1", "b:2", "n1")]
    assert decode(encode(ops)) == ops


def test_codec_version_1_golden_bytes_stay_readable():
    # Written by codec version 1; every later version must decode it unchanged.
    golden = bytes.fromhex("92019295 01a16bc40276310500 94 02a170c3c0".replace(" ", ""))
    assert decode(golden) == [SetOp("k", b"v1", 5, 0), DeleteOp("p", True, None)]
    assert encode(decode(golden)) == golden


def test_codec_op_codes_are_stable():
    assert (codec.OP_SET, codec.OP_DELETE, codec.OP_SET_MEMBER) == (1, 2, 3)


def test_codec_rejects_unknown_op_code():
    with pytest.raises(CodecError):
        decode(msgpack.packb([1, [[99, "x"]]]))


def test_state_machine_txn_key_deleted_then_set_again_is_a_new_key():
    # As in Consul, where a transaction's operations apply one after the other: the key the
    # set creates is new, with this entry's index as CreateIndex (hypothesis found the old one kept).
    sm = KVStateMachine()
    apply(sm, 2, SetOp("t/a", b"old"))
    [result] = apply(sm, 5, TxnOp((TxnItem("delete-tree", "t/"), TxnItem("cas", "t/a", b"new", 0, 0))))
    assert result.ok and result.results == (("t/a", KVEntry(b"new", 0, 5, 5, 0), False),)
    assert sm.get("t/a") == KVEntry(b"new", 0, 5, 5, 0)
    [result] = apply(sm, 6, TxnOp((TxnItem("delete", "t/a"), TxnItem("set", "t/a", b"again", 3))))
    assert result.ok and sm.get("t/a") == KVEntry(b"again", 3, 6, 6, 0)
