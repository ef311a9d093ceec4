import os
import shutil

import pytest

from node.codec import RestoreOp, SetOp, encode
from node.state_machine import KVEntry, KVStateMachine, from_image, to_image
from snapshots import format as fmt
from snapshots.store import SnapshotStore

GOLDEN = os.path.join(os.path.dirname(__file__), "..", "golden", "snapshot-v1.rkvs")
GOLDEN_V2 = os.path.join(os.path.dirname(__file__), "..", "golden", "snapshot-v2.rkvs")


def sample_state(n=50) -> KVStateMachine:
    sm = KVStateMachine()
    for i in range(n):
        sm.apply(i + 2, encode([SetOp(f"k{i:03d}", b"v" * (i % 7), i % 3)]))
    return sm


def write_sample(path, sm=None, index=60, term=3):
    sm = sm or sample_state()
    header = fmt.SnapshotHeader(index=index, term=term, key_count=len(sm.entries), created_unix=0.0,
                                raft_last=[index, term], raft_prev=[index - 1, term])
    fmt.write(str(path), header, to_image(sm))
    return sm


def test_snapshot_roundtrip_restores_every_entry_and_index(tmp_path):
    sm = write_sample(tmp_path / "s")
    header, meta, entries = fmt.read(str(tmp_path / "s"))
    back = from_image(meta, entries)
    assert header.index == 60 and header.key_count == 50
    assert dict(back.entries) == dict(sm.entries) and back.kv_index == sm.kv_index


@pytest.mark.parametrize("where", ["magic", "header", "payload", "trailer", "digest"])
def test_snapshot_flipped_byte_is_detected(tmp_path, where):
    path = tmp_path / "s"
    write_sample(path)
    size = os.path.getsize(path)
    offset = {"magic": 0, "header": 20, "payload": size // 2, "trailer": size - 45, "digest": size - 1}[where]
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))
    with pytest.raises(fmt.SnapshotCorrupt):
        fmt.verify(str(path))


@pytest.mark.parametrize("keep", [0, 10, 100, -1, -33])
def test_snapshot_truncated_file_is_detected_with_one_line(tmp_path, keep):
    path = tmp_path / "s"
    write_sample(path)
    data = path.read_bytes()
    path.write_bytes(data[:keep] if keep >= 0 else data[:keep])
    with pytest.raises(fmt.SnapshotCorrupt) as exc:
        fmt.verify(str(path))
    assert "\n" not in str(exc.value) and str(path) in str(exc.value)


def test_snapshot_format_v1_golden_file_stays_readable():
    header, meta, entries = fmt.read(GOLDEN)
    sm = from_image(meta, entries)
    assert (header.format_version, header.index, header.term, header.key_count) == (1, 5, 2, 3)
    assert dict(sm.entries) == {
        "app/a": KVEntry(b"alpha", 1, 3, 3, 0),
        "app/b": KVEntry(b"", 0, 3, 3, 0),
        "z": KVEntry(b"\x00\xff", 7, 3, 3, 0),
    }
    assert sm.tombstones == {"gone": 5} and sm.members == {"127.0.0.1:7001": ("n1", "127.0.0.1:8501")}


def test_snapshot_format_v2_golden_file_stays_readable_and_is_copied_as_version_2(tmp_path):
    """Written by raftkv up to format 2's last release: packed entries, a held lock, a large
    value, flags, an escaped key and a non-ASCII one."""
    header, meta, entries = fmt.read(GOLDEN_V2)
    sm = from_image(meta, entries)
    assert (header.format_version, header.index, header.term, header.key_count) == (2, 8, 2, 6)
    assert dict(sm.entries) == {
        "app/a": KVEntry(b"alpha", 1, 2, 2, 0),
        "app/b": KVEntry(b"again", 0, 3, 4, 0),
        "big": KVEntry(b"B" * 1100, 0, 6, 6, 0),
        "esc\x01\x00": KVEntry(b"\x00\xff", 0, 7, 7, 0),
        "lock/x": KVEntry(b"held", 0, 5, 5, 1, "s1"),
        "\u00e9t\u00e9": KVEntry(b"u", 9, 8, 8, 0),
    }
    assert sm.sessions.held == {"s1": {"lock/x"}}
    header, meta, entries = fmt.read(GOLDEN_V2)
    fmt.write(str(tmp_path / "copy"), header, fmt.Payload(meta, entries))  # as `raftkv snapshot restore` copies
    assert fmt.read_header(str(tmp_path / "copy")).format_version == 2
    assert dict(from_image(*fmt.read(str(tmp_path / "copy"))[1:]).entries) == dict(sm.entries)


def test_pruning_removes_the_name_at_once_and_frees_the_file_on_a_closer_thread(tmp_path, monkeypatch):
    import snapshots.store as store_module

    closers = []
    real = store_module.unlink_in_background
    monkeypatch.setattr(store_module, "unlink_in_background", lambda path: closers.append(real(path)) or closers[-1])
    store = SnapshotStore(str(tmp_path / "snaps"), retain=1)
    sm = sample_state()
    for index in (10, 20):
        store.write(fmt.SnapshotHeader(index=index, term=1, key_count=len(sm.entries), created_unix=0.0),
                    to_image(sm))
    assert [os.path.basename(p) for p in store.list()] == [store.name_for(20, 1)] and len(closers) == 1
    closers[0].join(5)
    held = [os.readlink(f"/proc/self/fd/{n}") for n in os.listdir("/proc/self/fd")
            if os.path.exists(f"/proc/self/fd/{n}")]
    assert not closers[0].is_alive() and not any(store.name_for(10, 1) in target for target in held)


def test_store_keeps_the_newest_and_quarantines_damaged_files(tmp_path):
    store = SnapshotStore(str(tmp_path / "snaps"), retain=3)
    sm = sample_state()
    for index in (10, 20, 30, 40):
        header = fmt.SnapshotHeader(index=index, term=1, key_count=len(sm.entries), created_unix=0.0)
        store.write(header, to_image(sm))
    names = [os.path.basename(p) for p in store.list()]
    assert names == [store.name_for(i, 1) for i in (40, 30, 20)]
    newest = store.list()[0]
    with open(newest, "r+b") as f:
        f.seek(100)
        f.write(b"\xff\xff")
    path, header = store.newest_valid()
    assert header.index == 30 and os.path.basename(path) == store.name_for(30, 1)
    broken = [n for n in os.listdir(store.folder) if n.endswith(".broken")]
    assert len(broken) == 1 and broken[0].startswith(store.name_for(40, 1))
    open(os.path.join(store.folder, "x.rkvs.123.tmp"), "w").close()
    store.remove_leftovers()
    assert not [n for n in os.listdir(store.folder) if n.endswith(".tmp")]


def test_restore_op_replaces_the_store_and_indexes_continue_above_the_snapshot(tmp_path):
    path = tmp_path / "s"
    write_sample(path, index=5000)
    sm = KVStateMachine()
    sm.apply(2, encode([SetOp("old", b"x")]))
    [result] = sm.apply(3, encode([RestoreOp(path.read_bytes())]))
    assert result.ok and "old" not in sm.entries and len(sm.entries) == 50
    sm.apply(4, encode([SetOp("new", b"y")]))
    assert sm.get("new").modify_index > 5000
    assert sm.get("k001").modify_index == 3  # restored entries keep their indexes
    bad = bytearray(path.read_bytes())
    bad[-1] ^= 1
    [result] = sm.apply(5, encode([RestoreOp(bytes(bad))]))
    assert not result.ok and "unusable snapshot" in result.error and "new" in sm.entries


def test_golden_file_is_byte_identical_to_what_the_writer_produces(tmp_path):
    # Guards the writer: a format change must bump FORMAT_VERSION, not silently alter v1 files.
    header, meta, entries = fmt.read(GOLDEN)
    sm = from_image(meta, entries)
    out = tmp_path / "again"
    image = to_image(sm)
    image.meta["raft_entries"] = meta["raft_entries"]
    fmt.write(str(out), header, image)
    with open(GOLDEN, "rb") as golden:
        assert out.read_bytes() == golden.read()
    shutil.rmtree(tmp_path)


def test_snapshot_synced_as_it_is_written_is_the_same_file(tmp_path, monkeypatch):
    """Handing the file to the disk every few bytes (store.SYNC_EVERY_BYTES) changes when the
    data reaches the disk, never the bytes: every range is handed once, in order, each after the
    one before it was waited for, and the file reads back as the one written at once."""
    calls = []
    real = fmt.write_back

    def write_back(fd, off, n, prev):
        calls.append((off, n, prev))
        real(fd, off, n, prev)

    monkeypatch.setattr(fmt, "write_back", write_back)
    monkeypatch.setattr(fmt, "PIECE_BYTES", 2048)  # many pieces written
    sm = sample_state(2000)
    header = lambda: fmt.SnapshotHeader(index=60, term=3, key_count=len(sm.entries), created_unix=0.0)  # noqa: E731
    fmt.write(str(tmp_path / "once"), header(), to_image(sm))
    assert calls == []
    fmt.write(str(tmp_path / "synced"), header(), to_image(sm), sync_every=1024)
    assert len(calls) >= 2 and calls[0] == (0, calls[0][1], None)
    assert all(c[0] == p[0] + p[1] and c[2] == (p[0], p[1]) for p, c in zip(calls, calls[1:], strict=False))
    assert (tmp_path / "once").read_bytes() == (tmp_path / "synced").read_bytes()
