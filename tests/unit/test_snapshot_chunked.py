"""Formats 2 and 3 (chunks of packed entries, snapshots/FORMAT.md) and the packed key table (node/entries.py)."""
import pytest

from node.codec import LockOp, SessionOp, SetOp, encode
from node.entries import PACK_MAX_VALUE, KVEntry, pack, unpack
from node.sorted_records import key_bytes
from node.state_machine import CHUNK_KEYS, KVStateMachine, freeze_image, from_image, to_image
from snapshots import format as fmt


@pytest.mark.parametrize("entry", [
    KVEntry(b"v", 0, 7, 7, 0), KVEntry(b"", 0, 3, 9, 0), KVEntry(b"x" * 10, 5, 3, 9, 2),
    KVEntry(b"v", 0, 7, 7, 1, "sess"), KVEntry(b"y" * (PACK_MAX_VALUE + 1), 0, 1, 1, 0),
    KVEntry(b"v", 1 << 64, 1, 1, 0), KVEntry(b"v", 0, (1 << 64) - 1, (1 << 64) - 1, 0),
])
def test_every_entry_unpacks_to_itself(entry):
    assert unpack(pack(entry)) == entry and type(unpack(pack(entry)).value) is bytes


def test_small_entries_are_one_bytes_object_and_held_or_large_ones_stay_tuples():
    assert type(pack(KVEntry(b"v", 3, 1, 2, 4))) is bytes
    assert type(pack(KVEntry(b"v", 0, 1, 2, 0, "s"))) is KVEntry
    assert type(pack(KVEntry(b"v" * (PACK_MAX_VALUE + 1), 0, 1, 2, 0))) is KVEntry


def busy_state(n: int) -> KVStateMachine:
    sm = KVStateMachine()
    sm.apply(1, encode([SessionOp("create", {"id": "s1", "node": "n1"})]))
    for i in range(n):
        sm.apply(i + 2, encode([SetOp(f"k{i:05d}", b"v" * (i % 9), i % 3)]))
    sm.apply(n + 2, encode([LockOp("k00001", b"held", 0, "s1", True)]))
    sm.apply(n + 3, encode([SetOp("k00002", b"big" * PACK_MAX_VALUE, 0)]))
    sm.apply(n + 4, encode([SetOp("k00003", b"again", 4)]))
    return sm


def write_frozen(path, sm: KVStateMachine) -> None:
    image, thaw = freeze_image(sm)
    header = fmt.SnapshotHeader(index=sm.applied_index, term=1, key_count=len(sm.entries), created_unix=0.0)
    fmt.write(str(path), header, image)
    thaw()


def test_format3_roundtrip_across_chunks_keeps_locks_large_values_and_flags(tmp_path):
    sm = busy_state(CHUNK_KEYS + 100)
    assert sm.get("k00001").session == "s1"
    write_frozen(tmp_path / "s", sm)
    header, meta, entries = fmt.read(str(tmp_path / "s"))
    assert header.format_version == 3 and entries.version == 3
    back = from_image(meta, entries)
    assert dict(back.entries.items()) == dict(sm.entries.items()) and len(back.entries) == CHUNK_KEYS + 100
    assert back.sessions.held == {"s1": {"k00001"}} and back.get("k00003") == KVEntry(b"again", 4, 5, sm.kv_index, 0)


def test_format1_image_is_still_written_and_read(tmp_path):
    sm = busy_state(10)
    header = fmt.SnapshotHeader(index=sm.applied_index, term=1, key_count=len(sm.entries), created_unix=0.0)
    fmt.write(str(tmp_path / "s"), header, to_image(sm))
    header, meta, entries = fmt.read(str(tmp_path / "s"))
    assert header.format_version == 1 and entries.version == 1
    assert dict(from_image(meta, entries).entries.items()) == dict(sm.entries.items())


def test_format3_writes_the_table_s_records_as_they_are_and_holds_every_wide_entry_once(tmp_path):
    sm = busy_state(CHUNK_KEYS + 100)
    write_frozen(tmp_path / "s", sm)
    _, _, entries = fmt.read(str(tmp_path / "s"))
    chunks = list(entries)
    records = [r for c in chunks for r in c[0]]
    wide = [row[0] for c in chunks for row in c[1]]
    assert sorted(wide) == ["k00001", "k00002"] and len(records) + len(wide) == len(sm.entries)
    assert records == sorted(records) and not any(r.endswith(b"\0\xff") for r in records)
    assert records[0] == key_bytes("k00000") + b"\0" + pack(sm.get("k00000"))


def forged(path, chunks, key_count, version=2) -> None:
    """A file of this format with these chunks, its checksum intact (a forgery, not damage)."""
    sm = KVStateMachine()
    meta = to_image(sm).meta
    header = fmt.SnapshotHeader(index=1, term=1, key_count=key_count, created_unix=0.0)
    fmt.write(str(path), header, fmt.Payload(meta, chunks, version=version))


@pytest.mark.parametrize("chunk,count", [
    ((["a"], [b"\x07" + b"\x00" * 40], []), 1),  # unknown kind
    ((["a"], [b"\x01\x00"], []), 1),  # shorter than its header
    ((["a"], [b""], []), 1),  # empty
    (([1], [pack(KVEntry(b"v", 0, 1, 1, 0))], []), 1),  # a key that is not a string
    ((["a"], ["text"], []), 1),  # an entry that is not bytes
    ((["a", "a"], [pack(KVEntry(b"v", 0, 1, 1, 0))] * 2, []), 2),  # a duplicate key
    (([], [], [["a", "v", 0, 1, 1, 0]]), 1),  # a wide record whose value is a string
    (([], [], [7]), 1),  # a wide record that is not an array
])
def test_forged_format2_chunks_are_refused_in_one_line(tmp_path, chunk, count):
    forged(tmp_path / "s", [chunk], count)
    header, meta, entries = fmt.read(str(tmp_path / "s"))
    with pytest.raises(fmt.SnapshotCorrupt) as exc:
        from_image(meta, entries)
    assert "\n" not in str(exc.value)


GOOD = b"a\0" + pack(KVEntry(b"v", 0, 1, 1, 0))


@pytest.mark.parametrize("chunk,count", [
    (([b"a\0\x07" + b"\0" * 40], []), 1),  # unknown kind
    (([b"a\0\x01\0"], []), 1),  # shorter than its header
    (([b"a\0"], []), 1),  # no entry
    (([b"a\0\xff"], []), 1),  # a wide entry's placeholder, without its entry
    (([b"a" + pack(KVEntry(b"v", 0, 1, 1, 0))], []), 1),  # no NUL
    (([b"\xc3\xa9\xc3\0" + GOOD[2:]], []), 1),  # a key that is not UTF-8
    ((["a\0v"], []), 1),  # a record that is not bytes
    (([GOOD, GOOD], []), 2),  # a duplicate key
    (([GOOD], [["a", b"w", 0, 1, 1, 0, "s"]]), 2),  # a wide record's key among the records
    (([], [["a", "v", 0, 1, 1, 0]]), 1),  # a wide record whose value is a string
])
def test_forged_format3_chunks_are_refused_in_one_line(tmp_path, chunk, count):
    forged(tmp_path / "s", [chunk], count, version=3)
    header, meta, entries = fmt.read(str(tmp_path / "s"))
    with pytest.raises(fmt.SnapshotCorrupt) as exc:
        from_image(meta, entries)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("version,chunk", [(2, (["a"], [], [])), (2, (["a"], [b"x"])), (3, ([GOOD], [], [])),
                                           (3, ([GOOD], "wide"))])
def test_a_chunk_of_the_wrong_shape_is_refused_by_the_reader(tmp_path, version, chunk):
    forged(tmp_path / "s", [chunk], fmt.chunk_keys(chunk), version=version)
    _, meta, entries = fmt.read(str(tmp_path / "s"))
    with pytest.raises(fmt.SnapshotCorrupt):
        list(entries)
