"""The checkpoint file format, versions 1 to 3 (documented in snapshots/FORMAT.md).

    offset 0   8 bytes   magic b"RAFTKVSN"
    offset 8   u32 LE    format version (1, 2 or 3)
    offset 12  u32 LE    header length H
    offset 16  H bytes   header: UTF-8 JSON object (see FORMAT.md)
    16+H       P bytes   payload: a stream of msgpack objects
    end-48     u64 LE    payload length P
    end-40     u64 LE    key count
    end-32     32 bytes  SHA-256 of every byte before it

The payload is one msgpack map of metadata followed by one msgpack array per record (version
1), or per chunk of records (version 2: [keys, packed entries, wide records]; version 3:
[records of key and packed entry, wide records]). What
the metadata and the records mean is the state machine's business (node/state_machine.py:
one record per key, in key order); this module owns the framing, the checksum and the checks.

Readers check the magic, the version, the lengths and the checksum before trusting any
byte; a file that fails is reported with one line saying why (`SnapshotCorrupt`).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import asdict, dataclass, field

import msgpack

from snapshots.fsutil import write_back

MAGIC = b"RAFTKVSN"
FORMAT_VERSION = 3  # the newest this raftkv reads and writes; versions 1 and 2 are still read (and written
# for an image in their layout: Payload.version)
PREFIX = struct.Struct("<8sII")
DIGEST_BYTES = 32
TRAILER = struct.Struct("<QQ")  # payload bytes, key count
TAIL_BYTES = TRAILER.size + DIGEST_BYTES
CHUNK_BYTES = 1 << 20  # what a reader reads at a time
PIECE_BYTES = 256 << 10  # what the writer joins before one write (store.SYNC_EVERY_BYTES)


class SnapshotCorrupt(Exception):
    """The file is not a readable, intact raftkv snapshot; the message says why, in one line."""


@dataclass
class SnapshotHeader:
    index: int  # the state is exactly the state after applying this log index
    term: int  # term of that entry
    key_count: int
    created_unix: float
    membership: list[str] = field(default_factory=list)  # Raft addresses; [] = keep the configured peers
    raft_last: list = field(default_factory=list)  # [index, term] of the entry at `index`
    raft_prev: list = field(default_factory=list)  # [index, term] of the entry before it
    format_version: int = FORMAT_VERSION
    source: str = "raftkv"
    payload_bytes: int = 0  # filled in by read_header from the trailer, not stored in the JSON

    def to_json(self) -> bytes:
        doc = asdict(self)
        doc.pop("payload_bytes")
        return json.dumps(doc, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> SnapshotHeader:
        """ValueError (or TypeError) unless `data` is a JSON object with the fields' types."""
        doc = json.loads(data)
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
        known = {f for f in cls.__dataclass_fields__}
        header = cls(**{k: v for k, v in doc.items() if k in known})
        for name in ("index", "term", "key_count", "format_version"):
            if not _is_count(getattr(header, name)):
                raise ValueError(f"{name} is not a non-negative integer")
        if not isinstance(header.created_unix, int | float) or not isinstance(header.source, str):
            raise ValueError("created_unix or source has the wrong type")
        if not isinstance(header.membership, list) or not all(isinstance(m, str) for m in header.membership):
            raise ValueError("membership is not a list of addresses")
        for name in ("raft_last", "raft_prev"):
            pair = getattr(header, name)
            if not isinstance(pair, list) or len(pair) not in (0, 2) or not all(_is_count(n) for n in pair):
                raise ValueError(f"{name} is not [index, term]")
        return header


def _is_count(value) -> bool:
    return type(value) is int and value >= 0


@dataclass
class Payload:
    """What a snapshot file carries: a metadata map and records, each encoded with msgpack.
    Their layout is the state machine's (node/state_machine.py: `freeze_image`, `from_image`)."""

    meta: dict
    entries: Iterable[tuple]  # records (or chunks, from version 2), in the order they are to be read back
    version: int = 1  # 1: one record per key; 2: chunks [[keys], [packed], [wide records]];
    # 3: chunks [[records: key NUL packed], [wide records]]


CHUNK_SHAPES = {2: 3, 3: 2}  # a chunk's number of arrays, by version


def chunk_keys(chunk) -> int:
    """How many keys a chunk holds: its first array (keys or records) and its wide records."""
    return len(chunk[0]) + len(chunk[-1])


def write(path: str, header: SnapshotHeader, image: Payload, progress: Callable[[int], None] | None = None,
          sync_every: int = 0) -> int:
    """Write a complete snapshot file at `path` (no rename: see store.py). Returns its size.
    `sync_every`: hand every that many bytes to the disk as they are written, so that the file's
    dirty pages never pile up (store.py says why; fsutil.write_back)."""
    digest = hashlib.sha256()
    packer = msgpack.Packer(use_bin_type=True)
    count = 0
    version = getattr(image.entries, "version", image.version)  # a file read back is written as read
    chunked = version > 1
    header.format_version = version
    flushed: list = [0, None]  # bytes handed to the disk so far, and the last range handed
    with open(path, "wb") as f:
        def out(data: bytes) -> None:
            digest.update(data)
            f.write(data)
            if sync_every and f.tell() - flushed[0] >= sync_every:
                f.flush()
                span = (flushed[0], f.tell() - flushed[0])
                write_back(f.fileno(), span[0], span[1], flushed[1])
                flushed[0], flushed[1] = f.tell(), span

        header_json = header.to_json()
        out(PREFIX.pack(MAGIC, version, len(header_json)))
        out(header_json)
        payload = 0
        chunk = [packer.pack(image.meta)]
        size = len(chunk[0])
        for entry in image.entries:
            data = packer.pack(entry)
            chunk.append(data)
            size += len(data)
            count += chunk_keys(entry) if chunked else 1
            if size >= PIECE_BYTES:
                out(b"".join(chunk))
                payload += size
                chunk, size = [], 0
                if progress:
                    progress(count)
        out(b"".join(chunk))
        payload += size
        out(TRAILER.pack(payload, count))
        f.write(digest.digest())
        total = f.tell()
    if count != header.key_count:
        raise ValueError(f"snapshot of {count} keys, but the header announced {header.key_count}")
    return total


def read_header(path: str) -> SnapshotHeader:
    """The header alone, after checking magic, version and lengths (not the checksum)."""
    try:
        with open(path, "rb") as f:
            return _header_of(f, path)
    except OSError as exc:
        raise SnapshotCorrupt(f"{path}: cannot read ({exc.strerror})") from None


def _header_of(f, path: str) -> SnapshotHeader:
    f.seek(0)
    prefix = f.read(PREFIX.size)
    if len(prefix) < PREFIX.size:
        raise SnapshotCorrupt(f"{path}: truncated ({len(prefix)} bytes, not even a header)")
    magic, version, header_len = PREFIX.unpack(prefix)
    if magic != MAGIC:
        raise SnapshotCorrupt(f"{path}: not a raftkv snapshot (bad magic)")
    if version > FORMAT_VERSION or version < 1:
        raise SnapshotCorrupt(f"{path}: snapshot format {version} is newer than this raftkv")
    size = os.fstat(f.fileno()).st_size
    if PREFIX.size + header_len + TAIL_BYTES > size:
        raise SnapshotCorrupt(f"{path}: truncated (header runs past the end of the file)")
    header = _parse_header(f.read(header_len), path)
    f.seek(size - TAIL_BYTES)
    _check_trailer(header, f.read(TRAILER.size), size, header_len, path)
    return header


def _parse_header(data: bytes, where: str) -> SnapshotHeader:
    try:
        return SnapshotHeader.from_json(data)
    except (ValueError, TypeError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise SnapshotCorrupt(f"{where}: unreadable header ({exc})") from None


def _check_trailer(header: SnapshotHeader, trailer: bytes, size: int, header_len: int, where: str) -> None:
    """The trailer's lengths must add up to the file's size and agree with the header."""
    payload_bytes, key_count = TRAILER.unpack(trailer)
    expected = PREFIX.size + header_len + payload_bytes + TAIL_BYTES
    if size != expected or key_count != header.key_count:
        raise SnapshotCorrupt(f"{where}: truncated or damaged: {size} bytes, its trailer says {expected}")
    header.payload_bytes = payload_bytes


def verify(path: str) -> SnapshotHeader:
    """Check everything, the SHA-256 included; returns the header of an intact file."""
    try:
        with open(path, "rb") as f:
            return _verified_header(f, path)
    except OSError as exc:
        raise SnapshotCorrupt(f"{path}: cannot read ({exc.strerror})") from None


def _verified_header(f, path: str) -> SnapshotHeader:
    header = _header_of(f, path)
    digest = hashlib.sha256()
    f.seek(0)
    remaining = os.fstat(f.fileno()).st_size - DIGEST_BYTES
    while remaining > 0:
        block = f.read(min(CHUNK_BYTES, remaining))
        if not block:
            raise SnapshotCorrupt(f"{path}: truncated while reading")
        digest.update(block)
        remaining -= len(block)
    if f.read(DIGEST_BYTES) != digest.digest():
        raise SnapshotCorrupt(f"{path}: checksum mismatch (the file is damaged)")
    return header


def read(path: str, verified: tuple[int, int] | None = None) -> tuple[SnapshotHeader, dict, Records]:
    """Verify the file, then return (header, metadata, iterator over the records). All from one
    open file: the path may be replaced meanwhile (raft.dump is re-pointed by the snapshot
    writer), and a header of one file with the records of another must never be read. The
    checksum is skipped only when the open file is the one the caller just verified
    (`verified`: its (st_ino, st_mtime_ns))."""
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed by the records (Records)
    except OSError as exc:
        raise SnapshotCorrupt(f"{path}: cannot read ({exc.strerror})") from None
    try:
        st = os.fstat(f.fileno())
        trusted = verified is not None and verified == (st.st_ino, st.st_mtime_ns)
        header = _header_of(f, path) if trusted else _verified_header(f, path)
        _, version, header_len = PREFIX.unpack(_pread(f, 0, PREFIX.size))
        f.seek(PREFIX.size + header_len)
        meta, entries = _decode(_unpacker(header.payload_bytes, _Limited(f, header.payload_bytes)), header, path,
                                f.close, version)
    except BaseException:
        f.close()
        raise
    return header, meta, entries


def _pread(f, offset: int, size: int) -> bytes:
    f.seek(offset)
    return f.read(size)


def _unpacker(payload_bytes: int, source=None) -> msgpack.Unpacker:
    """No declared length may exceed the payload it is declared in: a forged 4 GiB array header
    is refused, not allocated."""
    n = max(payload_bytes, 1)
    return msgpack.Unpacker(source, raw=False, max_buffer_size=0, max_str_len=n, max_bin_len=n,
                            max_array_len=n, max_map_len=n, max_ext_len=n)


_UNDECODABLE = (ValueError, TypeError, msgpack.UnpackException)  # msgpack's errors on garbage


class Records:
    """A payload's records, read as they are iterated; the file closes when they are exhausted,
    on an error, or on `close()` (also before the first record)."""

    def __init__(self, records: Iterator[tuple], close: Callable[[], None], version: int = 1) -> None:
        self._records, self._close = records, close
        self.version = version  # from 2 the items are chunks (Payload.version)

    def __iter__(self) -> Records:
        return self

    def __next__(self) -> tuple:
        try:
            return next(self._records)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self._close()


def _decode(unpacker: msgpack.Unpacker, header: SnapshotHeader, where: str,
            close: Callable[[], None], version: int) -> tuple[dict, Records]:
    """The payload's metadata map, and its records (arrays), checked at the end to be exactly
    `header.key_count` with nothing after them. Every failure is a SnapshotCorrupt naming `where`."""
    try:
        meta = next(unpacker)
    except StopIteration:
        raise SnapshotCorrupt(f"{where}: the payload is empty") from None
    except _UNDECODABLE as exc:
        raise SnapshotCorrupt(f"{where}: undecodable metadata ({exc})") from None
    if not isinstance(meta, dict):
        raise SnapshotCorrupt(f"{where}: the payload's metadata is not a map")

    def entries() -> Generator[tuple, None, None]:
        count = 0
        try:
            for item in unpacker:
                if not isinstance(item, list):
                    raise SnapshotCorrupt(f"{where}: record {count} is not an array")
                if version > 1:
                    if len(item) != CHUNK_SHAPES[version] or not all(type(part) is list for part in item) \
                            or (version == 2 and len(item[0]) != len(item[1])):
                        layout = "[keys, entries, wide]" if version == 2 else "[records, wide]"
                        raise SnapshotCorrupt(f"{where}: the chunk after record {count} is not {layout}")
                    count += chunk_keys(item)
                    yield item  # type: ignore[misc]
                else:
                    count += 1
                    yield tuple(item)
        except _UNDECODABLE as exc:
            raise SnapshotCorrupt(f"{where}: undecodable record {count} ({exc})") from None
        if count != header.key_count or unpacker.tell() != header.payload_bytes:
            raise SnapshotCorrupt(f"{where}: {count} records in {unpacker.tell()} bytes, the header says "
                                  f"{header.key_count} records in {header.payload_bytes} bytes")

    return meta, Records(entries(), close, version)


class _Limited:
    """A file view that ends where the payload ends (the digest is not payload)."""

    def __init__(self, f, size: int) -> None:
        self._f, self._left = f, size

    def read(self, n: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        n = self._left if n < 0 else min(n, self._left)
        data = self._f.read(n)
        self._left -= len(data)
        return data


def read_bytes(data: bytes) -> tuple[SnapshotHeader, dict, Records]:
    """`read` for a snapshot held in memory (a restore travelling through the log)."""
    if len(data) < PREFIX.size + TAIL_BYTES:
        raise SnapshotCorrupt("truncated snapshot")
    magic, version, header_len = PREFIX.unpack_from(data, 0)
    if magic != MAGIC:
        raise SnapshotCorrupt("not a raftkv snapshot (bad magic)")
    if version > FORMAT_VERSION or version < 1:
        raise SnapshotCorrupt(f"snapshot format {version} is newer than this raftkv")
    if hashlib.sha256(memoryview(data)[:-DIGEST_BYTES]).digest() != data[-DIGEST_BYTES:]:
        raise SnapshotCorrupt("checksum mismatch (the snapshot is damaged or truncated)")
    where = "snapshot"
    if PREFIX.size + header_len + TAIL_BYTES > len(data):
        raise SnapshotCorrupt(f"{where}: truncated (header runs past the end)")
    header = _parse_header(data[PREFIX.size:PREFIX.size + header_len], where)
    _check_trailer(header, data[-TAIL_BYTES:-DIGEST_BYTES], len(data), header_len, where)
    start = PREFIX.size + header_len
    unpacker = _unpacker(header.payload_bytes)
    unpacker.feed(data[start:start + header.payload_bytes])
    meta, entries = _decode(unpacker, header, where, lambda: None, version)
    return header, meta, entries
