import random

import pytest

from node.entries import EntryTable, KVEntry, pack, record_keys
from node.sorted_records import SortedRecords, key_bytes, key_str
from node.state_machine import KVStateMachine, freeze_image, from_image
from snapshots import format as fmt
from snapshots.format import SnapshotCorrupt

ODD_KEYS = ["", "a", "a\x00", "a\x00b", "a\x01", "a\x01\x01", "a\n", "a\nb", "ab", "\ud800", "\U0001f600", "é", "\x02"]


def test_key_encoding_keeps_str_order_and_comes_back():
    encoded = [key_bytes(k) for k in ODD_KEYS]
    assert [key_str(b) for b in encoded] == ODD_KEYS
    assert sorted(ODD_KEYS, key=lambda k: key_bytes(k) + b"\0") == sorted(ODD_KEYS)


def test_records_of_every_odd_key_pass_the_snapshot_check_and_forged_ones_do_not():
    entry = pack(KVEntry(b"v\x00\xff", 0, 1, 1))
    assert record_keys([key_bytes(k) + b"\0" + entry for k in ODD_KEYS]) == [key_bytes(k) for k in ODD_KEYS]
    for bad in (b"no-nul", b"a\0", b"a\0\x07" + b"\0" * 40, b"a\0\x01\0", b"a\0\xff",  # no entry, unknown kind,
                b"\xc3\0" + entry, b"a\x01\x03\0" + entry, "a\0text"):  # short, WIDE; not UTF-8, a bad escape, a str
        assert record_keys([b"ok\0" + entry, bad]) is None, bad


@pytest.mark.parametrize("long_neighbour", [False, True], ids=["all short", "beside a long record"])
def test_every_kind_with_exactly_its_header_passes_and_a_byte_less_does_not(long_neighbour):
    """The check takes a shortcut when every record has room for the longest header: both ways
    must hold each kind to its own header length."""
    long = [b"z\0" + pack(KVEntry(b"v" * 100, 7, 1, 2))] if long_neighbour else []
    whole = [pack(KVEntry(b"", 0, 1, 1)), pack(KVEntry(b"", 0, 1, 2)), pack(KVEntry(b"", 3, 1, 2))]
    assert [e[0] for e in whole] == [0, 1, 2] and all(len(e) == n for e, n in zip(whole, (9, 17, 33), strict=True))
    for entry in whole:
        assert record_keys([b"k\0" + entry, *long]) == [b"k", *([b"z"] if long else [])]
        assert record_keys([b"k\0" + entry[:-1], *long]) is None


def test_a_snapshot_whose_chunks_are_out_of_order_loads_sorted(tmp_path):
    from snapshots.format import Payload
    meta = {"applied_index": 3, "kv_index": 3, "index_offset": 0, "members": {}, "tombstones": [],
            "raft_entries": [[b"", 2, 1], [b"", 3, 1]]}
    records = {k: k.encode() + b"\0" + pack(KVEntry(k.encode(), 0, 1, 1)) for k in "abcde"}
    chunks = [[[records["c"], records["d"]], []], [[records["a"], records["e"]], []], [[records["b"]], []]]
    path = str(tmp_path / "unordered")
    fmt.write(path, fmt.SnapshotHeader(index=3, term=1, key_count=5, created_unix=0), Payload(meta, chunks, version=3))
    sm = from_image(*fmt.read(path)[1:])
    assert [sm.entries.get(k).value for k in "abcde"] == [b"a", b"b", b"c", b"d", b"e"]
    assert list(sm.entries.keys()) == list("abcde")


def test_sorted_records_stay_sorted_through_adds_replaces_and_deletes(monkeypatch):
    monkeypatch.setattr("node.sorted_records.LOAD", 4)  # many small pieces: splits and empty pieces
    rng = random.Random(5)
    records, model = SortedRecords(), {}
    for step in range(3000):
        key = key_bytes(f"k{rng.randrange(300):03d}") + b"\0"
        found = records.find(key)
        assert (found is not None) == (key in model)
        if found is not None and rng.random() < 0.4:
            records.delete(found[0], found[1])
            del model[key]
        elif found is not None:
            records.replace(found[0], found[1], key + b"%d" % step)
            model[key] = key + b"%d" % step
        else:
            records.add(key + b"%d" % step)
            model[key] = key + b"%d" % step
        assert len(records) == len(model)
    assert list(records) == sorted(model.values()) and not records.has_twins()
    assert list(records.from_prefix(b"k2")) == sorted(v for v in model.values() if v >= b"k2")
    assert [r for part in records.parts() for r in part] == list(records)
    records.add(next(iter(model)) + b"twin")
    assert records.has_twins()


def test_entry_table_takes_any_key_and_a_snapshot_of_it_loads_back(tmp_path):
    sm = KVStateMachine()
    keys = [k for k in ODD_KEYS if k != "\ud800"]  # msgpack writes no lone surrogate (nor did it before)
    for i, key in enumerate(keys):
        sm.entries[key] = KVEntry(b"v%d" % i, 0, i + 1, i + 1)
    sm.entries["big"] = KVEntry(b"x" * 5000, 0, 1, 2)  # a wide entry: kept as a KVEntry
    sm.applied_index = sm.kv_index = 20
    assert list(sm.entries.keys()) == sorted([*keys, "big"]) and sm.entries.get("a\x00").value == b"v2"
    image, thaw = freeze_image(sm)
    image.meta["raft_entries"] = [[b"", 19, 1], [b"", 20, 1]]
    path = str(tmp_path / "s")
    fmt.write(path, fmt.SnapshotHeader(index=20, term=1, key_count=len(sm.entries), created_unix=0), image)
    thaw()
    header, meta, entries = fmt.read(path)
    back = from_image(meta, entries)
    assert dict(back.entries.items()) == dict(sm.entries.items()) and list(back.entries) == list(sm.entries)
    del back.entries["big"], back.entries["a\x01"]
    assert "big" not in back.entries and back.entries.get("a\x01") is None and len(back.entries) == len(keys) - 1
    with pytest.raises(KeyError):
        del back.entries["nope"]


def test_a_snapshot_with_a_key_twice_is_refused(tmp_path):
    from snapshots.format import Payload
    meta = {"applied_index": 3, "kv_index": 3, "index_offset": 0, "members": {}, "tombstones": [],
            "raft_entries": [[b"", 2, 1], [b"", 3, 1]]}
    packed = b"\x00" + (3).to_bytes(8, "little") + b"v"
    a, b = b"a\0" + packed, b"b\0" + packed
    held = ["a", b"w", 0, 1, 1, 0, "s"]
    for version, chunks in (
            (2, [[["a", "b"], [packed, packed], []], [["b"], [packed], []]]),  # across chunks
            (2, [[["a", "b", "a"], [packed] * 3, []]]),  # out of order within one
            (2, [[["a"], [packed], [held]]]),  # a wide record's key among the packed
            (3, [[[a, b], []], [[b], []]]),
            (3, [[[a, b, a], []]]),
            (3, [[[a, b"a\0" + packed + b"x"], []]]),  # the same key, another entry
            (3, [[[a], [held]]])):
        path = str(tmp_path / "dup")
        fmt.write(path, fmt.SnapshotHeader(index=3, term=1, key_count=sum(map(fmt.chunk_keys, chunks)),
                                           created_unix=0), Payload(meta, chunks, version=version))
        with pytest.raises(SnapshotCorrupt, match="a key twice"):
            from_image(*fmt.read(path)[1:])


def test_entry_table_freezes_over_records():
    table = EntryTable((f"k{i}", KVEntry(b"v", 0, i + 1, i + 1)) for i in range(10))
    frozen = table.freeze()
    table["k1"] = KVEntry(b"new", 0, 2, 50)
    del table["k2"]
    assert frozen.get("k1") != table._raw("k1") and "k2" in frozen and "k2" not in table
    table.thaw()
    assert table.get("k1").value == b"new" and "k2" not in table and len(table) == 9
