"""node/state_machine.py against a plain dict model, driven by hypothesis (stateful).

Every op kind the state machine applies (put with and without check-and-set, delete, delete
with cas, delete of a prefix, batches sharing one index, transactions with every verb, restore
of a snapshot, undecodable entries), with snapshots taken mid-sequence, written and read back
through snapshots/format.py, and loaded in place of the running state machine; the model does
not notice. The model is written from Consul's rules, not from the module's code:
* CreateIndex is the index of the entry that created the key, ModifyIndex of the last one that
  changed it, LockIndex stays 0 (no sessions yet); every op of one entry shares its index;
* a delete leaves the key's index as the delete's (a tombstone); the store's index is that of
  the last entry that changed a key;
* a transaction sees its own earlier operations, applies all or nothing, and reports every
  failing operation;
* a restore replaces everything; indexes then continue above everything the snapshot held.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from node.codec import TXN_VERBS, DeleteOp, RestoreOp, SetOp, TxnItem, TxnOp, encode
from node.state_machine import KVEntry, KVStateMachine, freeze_image, from_image, to_image
from snapshots import format as fmt
from tests.support.fuzz import fuzz_settings

KEYS = ["a", "a/1", "a/2", "a/2/x", "ab", "b", "b/1"]
PREFIXES = ["", "a", "a/", "a/2", "b", "c"]
values = st.binary(max_size=6)
flags = st.integers(min_value=0, max_value=2**64 - 1)


# The session verbs (lock, unlock, check-session) are the unit tests' (test_sessions.py): this model has no sessions.
KV_VERBS = TXN_VERBS - {"lock", "unlock", "check-session"}


@dataclass
class Model:
    entries: dict[str, KVEntry] = field(default_factory=dict)
    tombstones: dict[str, int] = field(default_factory=dict)  # deleted key -> index of the delete
    kv_index: int = 0
    raft_index: int = 0  # the last Raft index applied
    offset: int = 0  # store index - Raft index, raised by restores

    def copy(self) -> Model:
        return Model(dict(self.entries), dict(self.tombstones), self.kv_index, self.raft_index, self.offset)

    def set(self, key: str, value: bytes, flags: int, at: int) -> None:
        old = self.entries.get(key)
        self.entries[key] = KVEntry(value, flags, old.create_index if old else at, at, old.lock_index if old else 0)
        self.tombstones.pop(key, None)
        self.kv_index = at

    def remove(self, key: str, at: int) -> None:
        del self.entries[key]
        self.tombstones[key] = at
        self.kv_index = at

    def under(self, prefix: str, entries: dict | None = None) -> list[str]:
        return sorted(k for k in (self.entries if entries is None else entries) if k.startswith(prefix))

    def key_index(self, key: str) -> int:
        if key in self.entries:
            return self.entries[key].modify_index
        return self.tombstones.get(key) or self.kv_index

    def prefix_index(self, prefix: str) -> int:
        found = [self.entries[k].modify_index for k in self.under(prefix)]
        found += [i for k, i in self.tombstones.items() if k.startswith(prefix)]
        return max(found, default=0) or self.kv_index


def cas_holds(entry: KVEntry | None, cas: int) -> bool:
    return entry is None if cas == 0 else entry is not None and entry.modify_index == cas


class StateMachineAgainstModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.sm = KVStateMachine()
        self.model = Model()
        self.dir = tempfile.TemporaryDirectory()
        self.files = 0
        self.snapshots: list[tuple[bytes, Model]] = []  # (snapshot file bytes, model when taken)
        self.frozen = None  # (image, thaw, model when frozen)

    def teardown(self) -> None:
        self.dir.cleanup()

    # -- applying entries ---------------------------------------------------------------------

    def apply(self, ops, gap: int = 1) -> tuple[list, int]:
        """Apply one entry of `ops` at the next Raft index (+gap: PySyncObj's own entries skip
        indexes); returns the results and the store index the model expects."""
        self.model.raft_index += gap
        return self.sm.apply(self.model.raft_index, encode(ops)), self.model.raft_index + self.model.offset

    def cas_for(self, data, key: str) -> int | None:
        entry = self.model.entries.get(key)
        current = [entry.modify_index, entry.modify_index + 1] if entry else [1, self.model.kv_index]
        return data.draw(st.sampled_from([None, 0, *current]), label="cas")

    def put_result(self, key: str, value: bytes, flags_: int, cas: int | None, at: int) -> bool:
        if cas is not None and not cas_holds(self.model.entries.get(key), cas):
            return False
        self.model.set(key, value, flags_, at)
        return True

    def delete_result(self, key: str, recurse: bool, cas: int | None, at: int) -> bool:
        if recurse:
            for k in self.model.under(key):
                self.model.remove(k, at)
            return True
        entry = self.model.entries.get(key)
        if cas is not None and (entry is None or entry.modify_index != cas):
            return False
        if entry is not None:
            self.model.remove(key, at)
        return True

    @rule(key=st.sampled_from(KEYS), value=values, flags_=flags, gap=st.integers(1, 3), data=st.data())
    def put(self, key, value, flags_, gap, data):
        cas = self.cas_for(data, key)
        [result], at = self.apply([SetOp(key, value, flags_, cas)], gap)
        assert result.ok == self.put_result(key, value, flags_, cas, at)

    @rule(key=st.sampled_from(KEYS), data=st.data())
    def delete(self, key, data):
        cas = self.cas_for(data, key)
        if cas == 0:
            cas = None  # the API refuses cas=0 on a delete; a delete with cas N needs N > 0
        [result], at = self.apply([DeleteOp(key, False, cas)])
        assert result.ok == self.delete_result(key, False, cas, at)

    @rule(prefix=st.sampled_from(PREFIXES))
    def delete_tree(self, prefix):
        [result], at = self.apply([DeleteOp(prefix, True)])
        assert result.ok and self.delete_result(prefix, True, None, at)

    @rule(ops=st.lists(st.tuples(st.booleans(), st.sampled_from(KEYS), values, st.booleans()), min_size=2, max_size=4))
    def batch(self, ops):
        """Several writes in one log entry (the proposer's batching): in order, one index."""
        codec_ops = [SetOp(k, v, 1, 0 if create_only else None) if is_set else DeleteOp(k)
                     for is_set, k, v, create_only in ops]
        results, at = self.apply(codec_ops)
        expected = [self.put_result(k, v, 1, 0 if create_only else None, at) if is_set
                    else self.delete_result(k, False, None, at) for is_set, k, v, create_only in ops]
        assert [r.ok for r in results] == expected

    @rule(items=st.lists(st.tuples(st.sampled_from(sorted(KV_VERBS)), st.sampled_from(KEYS + PREFIXES), values,
                                   flags, st.integers(0, 3)), min_size=1, max_size=5),
          data=st.data())
    def txn(self, items, data):
        # An index to check against: often a key's real ModifyIndex, so that checks can pass.
        txn_items = []
        for verb, key, value, flags_, pick in items:
            entry = self.model.entries.get(key)
            index = [0, entry.modify_index if entry else 1, self.model.kv_index, data.draw(st.integers(0, 60))][pick]
            txn_items.append(TxnItem(verb, key, value, flags_, index))
        [result], at = self.apply([TxnOp(tuple(txn_items))])
        expected_errors, expected_results = self.txn_result(txn_items, at)
        assert [i for i, _ in result.errors] == expected_errors
        assert result.ok == (not expected_errors)
        if result.ok:
            assert [(k, e, inc) for k, e, inc in result.results] == expected_results

    def txn_result(self, items: list[TxnItem], at: int) -> tuple[list[int], list]:
        view = dict(self.model.entries)
        errors, results = [], []
        for i, item in enumerate(items):
            entry = view.get(item.key)
            if item.verb in ("set", "cas"):
                if item.verb == "cas" and not cas_holds(entry, item.index):
                    errors.append(i)
                    continue
                view[item.key] = KVEntry(item.value, item.flags, entry.create_index if entry else at, at,
                                         entry.lock_index if entry else 0)
                results.append((item.key, view[item.key], False))
            elif item.verb == "get":
                if entry is None:
                    errors.append(i)
                else:
                    results.append((item.key, entry, True))
            elif item.verb == "get-tree":
                results += [(k, view[k], True) for k in self.model.under(item.key, view)]
            elif item.verb == "check-index":
                if entry is None or entry.modify_index != item.index:
                    errors.append(i)
                else:
                    results.append((item.key, entry, False))
            elif item.verb == "check-not-exists":
                if entry is not None:
                    errors.append(i)
            elif item.verb == "delete":
                view.pop(item.key, None)
            elif item.verb == "delete-tree":
                for k in self.model.under(item.key, view):
                    del view[k]
            elif item.verb == "delete-cas":
                if entry is None or entry.modify_index != item.index:
                    errors.append(i)
                else:
                    del view[item.key]
        if errors:
            return errors, []
        for key in set(self.model.entries) | set(view):
            if key not in view:
                self.model.remove(key, at)
            elif view[key] is not self.model.entries.get(key):
                self.model.entries[key] = view[key]  # as staged: a key deleted and set again is new
                self.model.tombstones.pop(key, None)
                self.model.kv_index = at
        # Each result carries the key's entry as the transaction left it (or as read, if it was deleted).
        return [], [(k, self.model.entries.get(k, e), inc) for k, e, inc in results]

    @rule(data=st.binary(max_size=12))
    def undecodable_entry(self, data):
        self.model.raft_index += 1
        results = self.sm.apply(self.model.raft_index, b"\xc1" + data)  # 0xc1 is never valid msgpack
        assert [r.ok for r in results] == [False]

    # -- snapshots ------------------------------------------------------------------------------

    def write_image(self, image) -> str:
        self.files += 1
        path = os.path.join(self.dir.name, f"{self.files}.rkvs")
        count = len(self.model.entries) if self.frozen is None else len(self.frozen[2].entries)
        header = fmt.SnapshotHeader(index=self.model.raft_index, term=1, key_count=count, created_unix=0.0)
        fmt.write(path, header, image)
        return path

    @rule()
    def checkpoint_and_reload(self):
        """What a restart does: the node loads its newest snapshot instead of its state."""
        if self.frozen is not None:
            return  # a checkpoint is being written; the node does not load another meanwhile
        header, meta, entries = fmt.read(self.write_image(to_image(self.sm)))
        self.sm = from_image(meta, entries)
        assert header.index == self.sm.applied_index == self.model.raft_index

    @precondition(lambda self: self.frozen is None)
    @rule()
    def freeze(self):
        """A checkpoint starts: the image is captured now and written while writes go on."""
        image, thaw = freeze_image(self.sm)
        self.frozen = (image, thaw, self.model.copy())

    @precondition(lambda self: self.frozen is not None)
    @rule()
    def write_frozen(self):
        image, thaw, then = self.frozen
        path = self.write_image(image)
        thaw()
        self.frozen = None
        _, meta, entries = fmt.read(path)
        back = from_image(meta, entries)
        assert dict(back.entries.items()) == then.entries, "the image holds the state when it was frozen"
        assert back.kv_index == then.kv_index and dict(back.tombstones.items()) == then.tombstones
        with open(path, "rb") as f:
            self.snapshots.append((f.read(), then))

    @rule()
    def snapshot_for_restore(self):
        if self.frozen is not None:
            return
        with open(self.write_image(to_image(self.sm)), "rb") as f:
            self.snapshots.append((f.read(), self.model.copy()))

    @precondition(lambda self: self.snapshots)
    @rule(data=st.data(), damage=st.booleans())
    def restore(self, data, damage):
        snapshot, then = data.draw(st.sampled_from(self.snapshots), label="snapshot")
        if damage:
            at = data.draw(st.integers(0, len(snapshot) - 1), label="flipped byte")
            snapshot = snapshot[:at] + bytes([snapshot[at] ^ 0x10]) + snapshot[at + 1:]
        [result], at = self.apply([RestoreOp(snapshot)])
        if damage:
            assert not result.ok and "unusable snapshot" in result.error
            return
        assert result.ok, result.error
        top = max(then.raft_index + then.offset, then.kv_index)
        if at <= top:
            self.model.offset += top + 1 - at
            at = top + 1
        self.model.entries, self.model.tombstones = dict(then.entries), dict(then.tombstones)
        self.model.kv_index = at

    # -- what every read sees -------------------------------------------------------------------

    @invariant()
    def same_state(self):
        sm, model = self.sm, self.model
        assert dict(sm.entries.items()) == model.entries
        assert sm.kv_index == model.kv_index and sm.applied_index == model.raft_index
        for key in KEYS:
            assert sm.key_index(key) == model.key_index(key), key
        for prefix in PREFIXES:
            items = sm.items_with_prefix(prefix)
            assert [k for k, _ in items] == model.under(prefix)
            assert sm.prefix_index(prefix, items) == model.prefix_index(prefix), prefix


StateMachineAgainstModel.TestCase.settings = fuzz_settings(100, stateful_step_count=30)
test_state_machine_matches_a_dict_model = StateMachineAgainstModel.TestCase
