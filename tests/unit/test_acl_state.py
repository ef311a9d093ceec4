"""The replicated ACL state (node/acl.py) through the state machine: every op kind, its
refusals, and the snapshot image."""

from __future__ import annotations

from node.acl import ANONYMOUS_ID, GLOBAL_MANAGEMENT_ID, secret_hash
from node.codec import AclOp, SetOp, decode, encode
from node.state_machine import KVStateMachine, OpResult, from_image, to_image


def apply(sm: KVStateMachine, index: int, op) -> OpResult:
    return sm.apply(index, encode([op]))[0]


def token(accessor: str, secret: str, *policies: str) -> dict:
    return {"accessor_id": accessor, "secret_hash": secret_hash(secret), "policy_ids": list(policies),
            "description": f"token {accessor}", "local": False, "create_time": "2026-01-01T00:00:00Z"}


def policy(pid: str, name: str, rules: str = "") -> dict:
    return {"id": pid, "name": name, "description": "", "rules": rules, "hash": "h"}


def test_acl_op_survives_the_codec():
    op = AclOp("token-set", {"token": token("a", "s"), "create": True})
    assert decode(encode([op])) == [op]


def test_acl_bootstrap_once_then_refused_with_the_reset_index():
    sm = KVStateMachine()
    assert apply(sm, 3, AclOp("bootstrap", {"token": token("a1", "s1", GLOBAL_MANAGEMENT_ID)})) == OpResult(True)
    assert sm.acl.token_for_secret(secret_hash("s1")).policy_ids == (GLOBAL_MANAGEMENT_ID,)
    refused = apply(sm, 4, AclOp("bootstrap", {"token": token("a2", "s2", GLOBAL_MANAGEMENT_ID)}))
    assert refused == OpResult(False, "ACL bootstrap no longer allowed (reset index: 3)")
    assert "a2" not in sm.acl.tokens


def test_acl_initial_management_token_is_created_once_and_counts_as_the_bootstrap():
    sm = KVStateMachine()
    initial = AclOp("bootstrap", {"token": token("i1", "init", GLOBAL_MANAGEMENT_ID), "initial": True})
    assert apply(sm, 2, initial).ok
    again = AclOp("bootstrap", {"token": token("i2", "init", GLOBAL_MANAGEMENT_ID), "initial": True})
    assert apply(sm, 3, again).ok and "i2" not in sm.acl.tokens  # present already: nothing changes
    assert not apply(sm, 4, AclOp("bootstrap", {"token": token("b", "s", GLOBAL_MANAGEMENT_ID)})).ok


def test_acl_policy_names_are_unique_and_builtin_policy_is_protected():
    sm = KVStateMachine()
    assert apply(sm, 2, AclOp("policy-set", {"policy": policy("p1", "ro"), "create": True})).ok
    dup = apply(sm, 3, AclOp("policy-set", {"policy": policy("p2", "ro"), "create": True}))
    assert dup == OpResult(False, 'Invalid Policy: A Policy with Name "ro" already exists')
    assert apply(sm, 4, AclOp("policy-set", {"policy": policy("p1", "ro2", 'acl = "read"'), "create": False})).ok
    assert (sm.acl.policies["p1"].name, sm.acl.policies["p1"].create_index, sm.acl.policies["p1"].modify_index) == (
        "ro2", 2, 4)
    assert not apply(sm, 5, AclOp("policy-set", {"policy": policy("nope", "x"), "create": False})).ok
    assert not apply(sm, 6, AclOp("policy-delete", {"id": GLOBAL_MANAGEMENT_ID})).ok
    assert apply(sm, 7, AclOp("policy-delete", {"id": "p1"})).ok and "p1" not in sm.acl.policies


def test_acl_tokens_need_existing_policies_and_unique_secrets():
    sm = KVStateMachine()
    apply(sm, 2, AclOp("policy-set", {"policy": policy("p1", "ro"), "create": True}))
    assert apply(sm, 3, AclOp("token-set", {"token": token("t1", "s1", "p1"), "create": True})).ok
    assert not apply(sm, 4, AclOp("token-set", {"token": token("t2", "s1", "p1"), "create": True})).ok
    assert not apply(sm, 5, AclOp("token-set", {"token": token("t3", "s3", "missing"), "create": True})).ok
    update = {**token("t1", "s1"), "secret_hash": None, "description": "new"}
    assert apply(sm, 6, AclOp("token-set", {"token": update, "create": False})).ok
    t1 = sm.acl.tokens["t1"]
    assert (t1.description, t1.policy_ids, t1.create_index, t1.modify_index) == ("new", (), 3, 6)
    stolen = {**token("t1", "other")}
    assert not apply(sm, 7, AclOp("token-set", {"token": stolen, "create": False})).ok
    assert not apply(sm, 8, AclOp("token-delete", {"accessor_id": ANONYMOUS_ID})).ok
    assert apply(sm, 9, AclOp("token-delete", {"accessor_id": "t1"})).ok
    assert sm.acl.token_for_secret(secret_hash("s1")) is None


def test_acl_malformed_change_is_refused_not_raised():
    sm = KVStateMachine()
    assert not apply(sm, 2, AclOp("token-set", {"create": True})).ok


def test_acl_state_rides_the_snapshot_image_without_any_secret():
    sm = KVStateMachine()
    apply(sm, 2, AclOp("policy-set", {"policy": policy("p1", "ro", 'key_prefix "" { policy = "read" }'),
                                      "create": True}))
    apply(sm, 3, AclOp("bootstrap", {"token": token("a1", "the-secret", GLOBAL_MANAGEMENT_ID)}))
    apply(sm, 4, AclOp("token-set", {"token": token("t1", "s1", "p1"), "create": True}))
    apply(sm, 5, SetOp("k", b"v"))
    image = to_image(sm)
    assert b"the-secret" not in repr(image.meta).encode()
    back = from_image(image.meta, list(image.entries))
    assert back.acl.to_meta() == sm.acl.to_meta()
    assert back.acl.token_for_secret(secret_hash("s1")).accessor_id == "t1"
    assert apply(back, 6, AclOp("bootstrap", {"token": token("a2", "x", GLOBAL_MANAGEMENT_ID)})).error == (
        "ACL bootstrap no longer allowed (reset index: 3)")
    assert "acl" not in to_image(KVStateMachine()).meta  # never used: older files unchanged
