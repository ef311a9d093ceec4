"""Damaged and forged snapshot files: SnapshotCorrupt with one line, never another exception,
a MemoryError from a forged length, or a state machine built from nonsense.

Damage by accident (bit flips, truncations) is the checksum's job (test_snapshot_format.py).
Here the files are sealed again with a valid checksum after the damage: what anybody who can
PUT /v1/snapshot, or write into a snapshot folder, can hand the decoder.
"""

from __future__ import annotations

import hashlib
import json

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.codec import RestoreOp, SetOp, encode
from node.entries import pack as pack_entry
from node.sorted_records import key_bytes
from node.state_machine import KVEntry, KVStateMachine, freeze_image, from_image, to_image
from snapshots import format as fmt
from tests.support.fuzz import fuzz_settings

HEADER = {"index": 9, "term": 2, "key_count": 1, "created_unix": 0.0}
META = {"applied_index": 9, "kv_index": 9, "members": {}, "tombstones": []}
RECORD = ["k", b"v", 0, 3, 9, 0]
RECORD3 = key_bytes("k") + b"\0" + pack_entry(KVEntry(b"v", 0, 3, 9))  # format 3's record of the same key


def seal(header: bytes, payload: bytes, key_count: int = 1, payload_bytes: int | None = None,
         version: int = 1) -> bytes:
    """A snapshot file around `header` and `payload`, trailer and SHA-256 made to match."""
    size = len(payload) if payload_bytes is None else payload_bytes
    body = fmt.PREFIX.pack(fmt.MAGIC, version, len(header)) + header + payload
    body += fmt.TRAILER.pack(size, key_count)
    return body + hashlib.sha256(body).digest()


def pack(*objects) -> bytes:
    return b"".join(msgpack.packb(o, use_bin_type=True) for o in objects)


def header(**changes) -> bytes:
    return json.dumps({**HEADER, **changes}).encode()


def valid_snapshot(tmp_path, version: int = 1) -> bytes:
    """Version 1 (`to_image`) or what a node writes (`freeze_image`, version 3)."""
    sm = KVStateMachine()
    for i in range(5):
        sm.apply(i + 2, encode([SetOp(f"k{i}", b"v" * i, i)]))
    sm.apply(7, encode([SetOp("big", b"w" * 2000, 0)]))  # a wide entry
    path = tmp_path / "valid.rkvs"
    image = to_image(sm) if version == 1 else freeze_image(sm)[0]
    fmt.write(str(path), fmt.SnapshotHeader(index=7, term=1, key_count=6, created_unix=0.0), image)
    assert fmt.read_header(str(path)).format_version == version
    return path.read_bytes()


def load_file(path) -> KVStateMachine:
    """What a starting node does with a snapshot file (node.checkpoint.load)."""
    _, meta, entries = fmt.read(str(path))
    return from_image(meta, entries)


def load_bytes(data: bytes) -> KVStateMachine:
    """What PUT /v1/snapshot and the restore entry do with the body (api.snapshot, node.state_machine)."""
    _, meta, entries = fmt.read_bytes(data)
    return from_image(meta, entries)


FORGED = {
    "header is a JSON list": seal(b"[]", pack(META, RECORD)),
    "header is a JSON string": seal(b'"x"', pack(META, RECORD)),
    "header index is a string": seal(header(index="9"), pack(META, RECORD)),
    "header key_count is negative": seal(header(key_count=-1), pack(META, RECORD), key_count=-1 & (2**64 - 1)),
    "header membership is a number": seal(header(membership=7), pack(META, RECORD)),
    "empty payload": seal(header(key_count=0), b"", key_count=0),
    "metadata is a list": seal(header(), pack([1, 2], RECORD)),
    "metadata lacks kv_index": seal(header(), pack({"applied_index": 9, "members": {}, "tombstones": []}, RECORD)),
    "metadata tombstone is a number": seal(header(), pack({**META, "tombstones": [5]}, RECORD)),
    "metadata member is a number": seal(header(), pack({**META, "members": {"a:1": 3}}, RECORD)),
    "array of 4 Gi elements": seal(header(), b"\xdd\xff\xff\xff\xff"),
    "map of 4 Gi pairs": seal(header(), b"\xdf\xff\xff\xff\xff"),
    "bin of 4 GiB": seal(header(), pack(META) + b"\xc6\xff\xff\xff\xff"),
    "str of 4 GiB": seal(header(), pack(META) + b"\xdb\xff\xff\xff\xff"),
    "record is a number": seal(header(), pack(META, 5)),
    "record value is a number (bytes(n) would allocate n bytes)": seal(header(), pack(META, ["k", 10**12, 0, 3, 9, 0])),
    "record key is a number": seal(header(), pack(META, [5, b"v", 0, 3, 9, 0])),
    "record too short": seal(header(), pack(META, ["k", b"v"])),
    "record index is a string": seal(header(), pack(META, ["k", b"v", 0, "3", 9, 0])),
    "fewer records than the header says": seal(header(key_count=2), pack(META, RECORD), key_count=2),
    "more records than the header says": seal(header(), pack(META, RECORD, ["l", b"", 0, 4, 9, 0])),
    "payload length past the end": seal(header(), pack(META, RECORD), payload_bytes=2**40),
    "a record cut short": seal(header(), pack(META) + pack(RECORD)[:-2]),
    "trailing bytes in the payload": seal(header(), pack(META, RECORD) + b"\xc1"),
    "record is a chunk of version 3": seal(header(), pack(META, [[RECORD3], []])),
    "version 3 chunk is a version 1 record": seal(header(), pack(META, RECORD), version=3),
    "version 3 chunk of three arrays": seal(header(), pack(META, [[RECORD3], [], []]), version=3),
    "record of version 3 is a str": seal(header(), pack(META, [["k\0v"], []]), version=3),
    "record of version 3 without its entry": seal(header(), pack(META, [[b"k\0"], []]), version=3),
    "record of version 3 cut in its entry header": seal(header(), pack(META, [[RECORD3[:6]], []]), version=3),
    "record of version 3, wide, is a number": seal(header(), pack(META, [[], [5]]), version=3),
    "records of version 3 hold a key twice": seal(header(key_count=2), pack(META, [[RECORD3, RECORD3], []]),
                                                  key_count=2, version=3),
    "records of version 3 hold a key as a record and as wide": seal(header(key_count=2),
                                                                    pack(META, [[RECORD3], [RECORD]]), key_count=2,
                                                                    version=3),
    "version 4": seal(header(), pack(META, [[RECORD3], []]), version=4),
}


@pytest.mark.parametrize("name", FORGED)
def test_forged_snapshot_file_is_snapshot_corrupt_naming_the_file(tmp_path, name):
    path = tmp_path / "forged.rkvs"
    path.write_bytes(FORGED[name])
    with pytest.raises(fmt.SnapshotCorrupt) as exc:
        load_file(path)
    assert "\n" not in str(exc.value)
    if "metadata" not in name and not name.startswith("record"):
        assert str(path) in str(exc.value)  # the format's own checks name the file


@pytest.mark.parametrize("name", FORGED)
def test_forged_snapshot_restore_is_refused_and_changes_nothing(name):
    with pytest.raises(fmt.SnapshotCorrupt):
        load_bytes(FORGED[name])
    sm = KVStateMachine()
    sm.apply(2, encode([SetOp("kept", b"1")]))
    [result] = sm.apply(3, encode([RestoreOp(FORGED[name])]))
    assert not result.ok and result.error.startswith("unusable snapshot: ")
    assert dict(sm.entries.items()) == {"kept": sm.get("kept")} and sm.kv_index == 2


@pytest.mark.parametrize("version", [1, 3])
def test_the_fuzzed_originals_load(tmp_path, version):
    sm = load_bytes(valid_snapshot(tmp_path, version))
    assert len(sm.entries) == 6 and sm.get("k3").value == b"vvv" and sm.get("big").value == b"w" * 2000


@fuzz_settings(150)
@given(data=st.data(), version=st.sampled_from([1, 3]))
def test_resealed_random_damage_decodes_or_is_snapshot_corrupt(tmp_path_factory, data, version):
    """Bytes flipped, cut, repeated or inserted anywhere after the prefix, then sealed with a valid
    checksum: decoding gives a state machine or SnapshotCorrupt, nothing else."""
    original = valid_snapshot(tmp_path_factory.mktemp("s"), version)
    _, _, header_len = fmt.PREFIX.unpack_from(original)
    body = bytearray(original[fmt.PREFIX.size:-fmt.DIGEST_BYTES])
    for _ in range(data.draw(st.integers(1, 4), label="damages")):
        at = data.draw(st.integers(0, len(body)), label="at")
        kind = data.draw(st.sampled_from(["flip", "cut", "insert", "repeat"]), label="kind")
        if kind == "flip" and at < len(body):
            body[at] ^= 1 << data.draw(st.integers(0, 7), label="bit")
        elif kind == "cut":
            del body[at:at + data.draw(st.integers(1, 16), label="cut")]
        elif kind == "insert":
            body[at:at] = data.draw(st.binary(min_size=1, max_size=16), label="inserted")
        else:
            body[at:at] = body[at:at + data.draw(st.integers(1, 32), label="repeated")]
    sealed = fmt.PREFIX.pack(fmt.MAGIC, version, header_len) + bytes(body)
    sealed += hashlib.sha256(sealed).digest()
    try:
        sm = load_bytes(sealed)
    except fmt.SnapshotCorrupt as exc:
        assert "\n" not in str(exc)
    else:
        assert all(type(k) is str and type(e.value) is bytes for k, e in sm.entries.items())
