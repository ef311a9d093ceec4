"""Format 2 (chunks of packed entries, snapshots/FORMAT.md) and the packed key table (node/entries.py)."""
import pytest

from node.codec import LockOp, SessionOp, SetOp, encode
from node.entries import PACK_MAX_VALUE, KVEntry, pack, unpack
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


def test_format2_roundtrip_across_chunks_keeps_locks_large_values_and_flags(tmp_path):
    sm = busy_state(CHUNK_KEYS + 100)
    assert sm.get("k00001").session == "s1"
    write_frozen(tmp_path / "s", sm)
    header, meta, entries = fmt.read(str(tmp_path / "s"))
    assert header.format_version == 2 and entries.chunked
    back = from_image(meta, entries)
    assert dict(back.entries.items()) == dict(sm.entries.items()) and len(back.entries) == CHUNK_KEYS + 100
    assert back.sessions.held == {"s1": {"k00001"}} and back.get("k00003") == KVEntry(b"again", 4, 5, sm.kv_index, 0)


def test_format1_image_is_still_written_and_read(tmp_path):
    sm = busy_state(10)
    header = fmt.SnapshotHeader(index=sm.applied_index, term=1, key_count=len(sm.entries), created_unix=0.0)
    fmt.write(str(tmp_path / "s"), header, to_image(sm))
    header, meta, entries = fmt.read(str(tmp_path / "s"))
    assert header.format_version == 1 and not entries.chunked
    assert dict(from_image(meta, entries).entries.items()) == dict(sm.entries.items())


def forged(path, chunks, key_count) -> None:
    """A format 2 file with these chunks, its checksum intact (a forgery, not damage)."""
    sm = KVStateMachine()
    meta = to_image(sm).meta
    header = fmt.SnapshotHeader(index=1, term=1, key_count=key_count, created_unix=0.0)
    fmt.write(str(path), header, fmt.Payload(meta, chunks, chunked=True))


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


def test_a_chunk_that_is_not_three_lists_is_refused_by_the_reader(tmp_path):
    forged(tmp_path / "s", [(["a"], [], [])], 1)
    _, meta, entries = fmt.read(str(tmp_path / "s"))
    with pytest.raises(fmt.SnapshotCorrupt):
        list(entries)
