"""The Raft wire, decoded safely: no peer message can run code or build arbitrary objects.

PySyncObj 0.3.17 frames every message as a 4-byte native `int` length, then zlib of a pickle,
and decodes it with `pickle.loads` (falling back to the pure-Python unpickler on any error):
one framed message from anybody who can reach the Raft port ran code in the node. The same
`pickle.loads` decodes, in `pysyncobj.syncobj`, every log entry it applies and the entries a
leader sends in pieces (`transmission`), so an entry forged by a peer ran code when applied.

Every message raftkv exchanges is made of plain types: dict, list, tuple, str, bytes, int,
float, bool, None (NOTES.md, "The wire", lists the shapes). PySyncObj pickles with protocol 2,
where `bytes` has no opcode of its own: `b"..."` is written as the call
`_codecs.encode("...", "latin1")` and `b""` as `bytes()`. The decoder therefore resolves exactly
these two names, each to a checked stand-in (a str and "latin1"; no argument), and refuses
every other global: no class, no function, no instance can come out of a peer's bytes.

`install()` swaps module-level names of PySyncObj, as node.engine.journal_seam does, but for
good (nothing may be decoded the old way, ever):

* `pysyncobj.tcp_connection.pickle`  -> `MESSAGES` (frames on every connection)
* `pysyncobj.tcp_connection.zlib`    -> `ZLIB` (decompression stops at `max_message_bytes`)
* `pysyncobj.syncobj.pickle`         -> `ENTRIES` (applied commands and reassembled entries;
  an entry tuple whose command type is not one raftkv writes is refused)
* `pysyncobj.tcp_server.TcpConnection`, `pysyncobj.transport.TcpConnection` -> `GuardedConnection`
  (a frame announcing more than `max_frame_bytes`, a first frame of an accepted connection
  more than FIRST_FRAME_BYTES, or a negative length, closes the connection; with a cluster
  secret, node.engine.peer_auth's handshake and sealed records on the socket)
* `pysyncobj.transport.TcpServer` -> `GuardedServer` (accept queue, accept errors survived)

Pinned by tests/unit/engine/test_pysyncobj_pins.py and tests/unit/engine/test_wire.py; a
hostile peer is tried against a real cluster by tests/fault/test_hostile_peer.py.
"""

from __future__ import annotations

import errno
import io
import logging
import pickle
import socket
import struct
import threading
import time
import types
import zlib
from dataclasses import dataclass

import pysyncobj.pickle as _pysyncobj_pickle
import pysyncobj.syncobj as _pysyncobj_syncobj
import pysyncobj.tcp_connection as _pysyncobj_tcp_connection
import pysyncobj.tcp_server as _pysyncobj_tcp_server
import pysyncobj.transport as _pysyncobj_transport
from pysyncobj.poller import POLL_EVENT_TYPE
from pysyncobj.tcp_connection import TcpConnection as _TcpConnection
from pysyncobj.tcp_server import TcpServer as _TcpServer

from node.engine.peer_auth import Keyring, PeerAuthError, SecureChannel

log = logging.getLogger("raftkv.wire")

MiB = 1024 * 1024
# The largest log entry raftkv writes: PUT /v1/snapshot travels through the log as one entry of
# up to api.context.ApiConfig.max_restore_bytes (64 MiB); a write batch is at most
# node.proposer.MAX_BATCH_BYTES (4 MiB) plus one value.
DEFAULT_MAX_ENTRY_BYTES = 64 * MiB

# Command type bytes of PySyncObj's log entries (pysyncobj.syncobj._COMMAND_TYPE): raftkv writes
# REGULAR (its one replicated method) and PySyncObj its NO_OP; never MEMBERSHIP (a pickled
# TCPNode) nor VERSION, which only PySyncObj's utility commands create (the transport refuses them).
REGULAR, NO_OP = 0, 1
ENTRY_TYPES = frozenset({REGULAR, NO_OP})


@dataclass(frozen=True)
class WireLimits:
    """`max_frame_bytes`: a frame's announced length (what is buffered before decoding);
    `max_message_bytes`: what a frame may decompress to."""

    max_frame_bytes: int
    max_message_bytes: int

    @classmethod
    def for_entries(cls, max_entry_bytes: int = DEFAULT_MAX_ENTRY_BYTES) -> WireLimits:
        """The limits that let an entry of `max_entry_bytes` through in any message.

        The largest legitimate frame is an `apply_command` (a follower's proposal, forwarded to
        the leader by PySyncObj) carrying one whole entry: pickled twice with protocol 2
        (command, then message), bytes >= 0x80 are UTF-8 encoded twice, so 64 MiB of random
        bytes decode from 160 MiB and travel as 90 MiB of zlib (measured; what PySyncObj's own
        encoder and raftkv nodes before protocol 4 send: ours are smaller). The leader's own
        messages are smaller: entries in batches of 64 KiB, bigger entries and snapshots in
        64 KiB pieces (PySyncObj's `appendEntriesBatchSizeBytes`, `logCompactionBatchSize`).
        """
        return cls(max_frame_bytes=max_entry_bytes * 3 // 2 + MiB, max_message_bytes=max_entry_bytes * 5 // 2 + MiB)


_limits = WireLimits.for_entries()
_keyring: Keyring | None = None  # the cluster secrets; None: the wire is plain (loopback only, or --insecure-raft)


class RefusedGlobal(pickle.UnpicklingError):
    """A peer's pickle named a global (a class or a function) the wire does not allow."""


class FrameTooLarge(ValueError):
    """A frame would decompress to more than the wire allows."""


def _bytes_from_latin1(text, encoding):
    """Protocol 2's `bytes`: `_codecs.encode(str, "latin1")`, and nothing else."""
    if type(text) is not str or encoding != "latin1":
        raise pickle.UnpicklingError("_codecs.encode is allowed only as protocol 2 bytes (a str and 'latin1')")
    return text.encode("latin-1")


def _empty_bytes(*args):
    """Protocol 2's `b""`: `bytes()` with no argument (`bytes(n)` would allocate n bytes)."""
    if args:
        raise pickle.UnpicklingError("bytes() is allowed only without arguments")
    return b""


_ALLOWED_GLOBALS = {
    ("_codecs", "encode"): _bytes_from_latin1,
    ("__builtin__", "bytes"): _empty_bytes,  # protocol 2's spelling
    ("builtins", "bytes"): _empty_bytes,
}


class _PlainUnpickler(pickle.Unpickler):
    """Plain types only; no persistent ids (pickle.Unpickler refuses them without a persistent_load)."""

    def find_class(self, module, name):
        found = _ALLOWED_GLOBALS.get((module, name))
        if found is None:
            raise RefusedGlobal(f"{module}.{name}")
        return found


def loads(data) -> object:
    """Decode one pickle made of plain types; RefusedGlobal (an UnpicklingError) for anything else."""
    return _PlainUnpickler(io.BytesIO(data)).load()


def is_cut_short(data) -> bool:
    """`data` is the start of a pickle whose rest has not arrived (it reads to its end and finds
    no STOP); False for a whole pickle and for one that is wrong in any other way."""
    try:
        loads(data)
    except EOFError:
        return True
    except pickle.UnpicklingError as exc:
        return "truncated" in str(exc)
    except Exception:
        return False
    return False


def decompress(data) -> bytes:
    """zlib.decompress that stops at `max_message_bytes` (a zlib bomb costs nothing)."""
    decompressor = zlib.decompressobj()
    out = decompressor.decompress(data, _limits.max_message_bytes)
    if decompressor.unconsumed_tail:
        raise FrameTooLarge(f"a frame decompresses to more than {_limits.max_message_bytes} bytes")
    if not decompressor.eof:
        raise zlib.error("incomplete or truncated zlib stream")
    return out


def regular_payload(command: bytes) -> bytes | None:
    """The payload of a REGULAR command as raftkv's one replicated method writes it
    ((method id 0, (payload,))), or None for anything else."""
    if command[:1] != bytes([REGULAR]):
        return None
    try:
        decoded = loads(command[1:])
    except Exception:  # noqa: BLE001 - any undecodable command is simply not one of ours
        return None
    if (type(decoded) is tuple and len(decoded) == 2 and type(decoded[0]) is int and decoded[0] == 0
            and type(decoded[1]) is tuple and len(decoded[1]) == 1 and type(decoded[1][0]) is bytes):
        return decoded[1][0]
    return None


def regular_command(payload: bytes) -> bytes:
    """The REGULAR command that calls raftkv's one replicated method with `payload`, as
    PySyncObj's `@replicated` writes it (in protocol 4: `dumps`)."""
    return bytes([REGULAR]) + dumps((0, (payload,)))


def is_regular_command(command: bytes) -> bool:
    """A REGULAR command as raftkv's one replicated method writes it: (method id 0, (payload,))."""
    return regular_payload(command) is not None


class _Throttled:
    """One log line per `every_s` per kind of event, with the count of those not logged."""

    def __init__(self, every_s: float = 10.0) -> None:
        self.every_s = every_s
        self._lock = threading.Lock()
        self._next: dict[str, float] = {}
        self._unlogged: dict[str, int] = {}

    def warning(self, kind: str, message: str) -> None:
        now = time.monotonic()
        with self._lock:
            if now < self._next.get(kind, 0.0):
                self._unlogged[kind] = self._unlogged.get(kind, 0) + 1
                return
            self._next[kind] = now + self.every_s
            unlogged = self._unlogged.pop(kind, 0)
        more = f" ({unlogged} more since the last such line)" if unlogged else ""
        log.warning("%s%s", message, more)


THROTTLED = _Throttled()


_decoding = threading.local()  # the connection whose frame is being decoded, for the log line


def _peer_name(conn) -> str:
    sock = getattr(conn, "_TcpConnection__socket", None)
    if sock is None:
        return "a peer"
    try:
        host, port = sock.getpeername()[:2]
        return f"{host}:{port}"
    except (OSError, AttributeError, ValueError, TypeError):
        return "a peer"


def _loads_message(data) -> object:
    try:
        return loads(data)
    except RefusedGlobal as exc:
        conn = getattr(_decoding, "conn", None)
        THROTTLED.warning("global", f"raft: closed a connection from {_peer_name(conn)}: its message names "
                                    f"{exc} (only plain types are decoded)")
        raise


def _loads_entry_part(data) -> object:
    """`pysyncobj.syncobj`'s decoder: commands it applies, and entries a leader sent in pieces."""
    try:
        value = loads(data)
    except RefusedGlobal as exc:
        THROTTLED.warning("entry-global", f"raft: refused a log entry that names {exc}")
        raise
    if (type(value) is tuple and len(value) == 3 and type(value[0]) is bytes and value[0][:1]
            and value[0][0] not in ENTRY_TYPES):
        THROTTLED.warning("entry-type", f"raft: refused a log entry of command type {value[0][0]}")
        raise pickle.UnpicklingError(f"log entry of command type {value[0][0]}")
    return value


# Pickle protocol 4 rather than PySyncObj's 2 for what we encode: protocol 2 has no opcode for
# bytes and spells each one as a latin-1 str (random bytes double in size as UTF-8, and decoding
# each `bytes` is a call of the `_codecs.encode` stand-in above); protocol 4 writes bytes as
# they are and needs no global at all. Every decoder (ours, PySyncObj's, a raftkv node of an
# earlier release) reads both.
WIRE_PICKLE_PROTOCOL = 4


def dumps(obj, protocol=None) -> bytes:
    """PySyncObj's `pickle.dumps(obj)` (it passes no protocol, and ignored any), in protocol 4."""
    return pickle.dumps(obj, WIRE_PICKLE_PROTOCOL)


# The names PySyncObj's modules call on their `pickle`: `dumps` and `loads` (`to_bytes` for completeness).
# ENTRIES.dumps encodes the commands it appends (the caller's thread: our event loop) and an entry
# it sends in pieces; an entry of 32 writes of random values decodes 7 times faster on every
# node's apply than in protocol 2.
MESSAGES = types.SimpleNamespace(dumps=dumps, loads=_loads_message, to_bytes=_pysyncobj_pickle.to_bytes)
ENTRIES = types.SimpleNamespace(dumps=dumps, loads=_loads_entry_part, to_bytes=_pysyncobj_pickle.to_bytes)

ZLIB = types.SimpleNamespace(compress=zlib.compress, decompress=decompress, error=zlib.error)

_FRAME_HEADER = struct.Struct("i")  # PySyncObj's: native byte order, signed

# What we send (every receiver, PySyncObj's or an older raftkv, reads it unchanged: it is still
# zlib of a pickle), in pickle protocol 4 (`dumps`). Frames below COMPRESS_FROM_BYTES (every
# heartbeat, acknowledgement and write batch) travel as zlib *stored* blocks: zlib.compress costs
# more than the pickle and the seal together (~10 µs for 70 bytes, ~35 µs for a 450-byte entry,
# ~500 µs for 32 writes of random values; each call sets up a fresh deflate state) to save a few
# bytes on a LAN; a stored stream is a header, the bytes and an Adler-32. Bigger frames
# (snapshot pieces, big entries) are still compressed.
COMPRESS_FROM_BYTES = 64 * 1024
_STORED_BLOCK = 0xFFFF  # the most a zlib stored block holds
_STORED_HEADER = b"\x78\x01"  # deflate, 32 KiB window, no dictionary, "fastest" level
_STORED_BLOCK_HEADER = struct.Struct("<BHH")  # final-block bit, LEN, one's complement of LEN
_ADLER32 = struct.Struct(">I")


def stored_zlib(data: bytes) -> bytes:
    """`data` as a zlib stream of stored (uncompressed) blocks: what zlib.decompress reads back."""
    parts = [_STORED_HEADER]
    pos, size = 0, len(data)
    while True:
        chunk = data[pos:pos + _STORED_BLOCK]
        pos += len(chunk)
        parts.append(_STORED_BLOCK_HEADER.pack(pos >= size, len(chunk), len(chunk) ^ 0xFFFF))
        parts.append(chunk)
        if pos >= size:
            break
    parts.append(_ADLER32.pack(zlib.adler32(data)))
    return b"".join(parts)


def encode_frame(message) -> bytes:
    """One frame as PySyncObj reads it: 4-byte native length, then zlib of a pickle."""
    data = dumps(message)
    data = stored_zlib(data) if len(data) < COMPRESS_FROM_BYTES else zlib.compress(data, 3)
    return _FRAME_HEADER.pack(len(data)) + data
_BUFFER = "_TcpConnection__readBuffer"  # PySyncObj's read buffer (bytes received, not yet decoded)
_WRITE_BUFFER = "_TcpConnection__writeBuffer"  # PySyncObj's bytes not yet sent


# The first frame of a connection a stranger opened is its address (or, with PySyncObj's
# encryption, its random key): a few hundred bytes.
FIRST_FRAME_BYTES = 4096
# At most this much is read from one connection per poll (the poller is level-triggered: the
# rest is read at the next tick, after the other connections and the tick's own work).
READ_BURST_BYTES = 4 * MiB


class GuardedConnection(_TcpConnection):
    """PySyncObj's TcpConnection, closed at once when a frame announces too many bytes.

    PySyncObj reads everything the socket has into one buffer and decodes a frame once all
    its announced bytes are there: a forged 2 GiB length made it buffer whatever came, for as
    long as it came. Here every frame header is checked as soon as its 4 bytes arrive.
    `_received` counts the bytes read since the connection (re)started and `_next_header` is
    where, in that count, the next unchecked header starts; PySyncObj's buffer holds the last
    `len(buffer)` of those bytes (it drops whole frames from the front as it decodes them).

    PySyncObj's buffer is `bytes`, grown by `+=` 8 KiB at a time, and one poll reads all the
    socket has: a 32 MiB frame sent at once held the tick thread 8.8 s (quadratic copying).
    Here the buffer is a bytearray (grown in place; not with PySyncObj's encryption, whose
    Fernet takes bytes only) and one poll reads at most READ_BURST_BYTES of a connection.

    With a cluster secret, the socket carries node.engine.peer_auth's handshake and sealed
    records, and only the plaintext of records that passed authentication reaches PySyncObj's
    buffer: nothing a stranger sends is ever decoded.
    """

    def __init__(self, *args, **kwargs) -> None:
        self._received = 0
        self._next_header = 0
        self._burst = 0
        self.opened_at = time.monotonic()
        # TcpServer passes the accepted socket: the other side opened this connection.
        self._accepted = kwargs.get("socket") is not None
        self._channel: SecureChannel | None = None
        super().__init__(*args, **kwargs)
        if self._accepted:
            self._start_channel(dialer=False)

    def connect(self, host, port):
        self._received = self._next_header = 0
        self._accepted = False
        self.opened_at = time.monotonic()
        started = super().connect(host, port)
        if started:
            self._start_channel(dialer=True)  # the hello leaves once the socket is writable
        return started

    def disconnect(self):
        self._received = self._next_header = 0
        self._channel = None
        super().disconnect()

    def _start_channel(self, dialer: bool) -> None:
        self._channel = None if _keyring is None else SecureChannel(_keyring, dialer, _limits.max_frame_bytes + 4)
        if self._channel is not None:
            self._write(self._channel.opening())

    def _write(self, data: bytes) -> None:
        setattr(self, _WRITE_BUFFER, getattr(self, _WRITE_BUFFER) + data)

    def send(self, message):
        if self._channel is None and (self.encryptor is not None or self.sendRandKey):
            return super().send(message)  # PySyncObj's own password scheme (raftkv never sets one)
        frame = encode_frame(message)
        self._write(frame if self._channel is None else self._channel.seal(frame))
        self._TcpConnection__trySendBuffer()

    def _read_sealed(self) -> bool:
        """PySyncObj's read, with the socket's bytes opened by the channel on their way in."""
        sock = self._TcpConnection__socket
        try:
            incoming = sock.recv(self._TcpConnection__recvBufferSize)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                self.disconnect()
            return False
        if not incoming or sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            self.disconnect()
            return False
        assert self._channel is not None
        try:
            reply, plain = self._channel.receive(incoming)
        except PeerAuthError as exc:
            THROTTLED.warning(f"auth-{exc.kind}", f"raft: closed a connection with {_peer_name(self)}: {exc}")
            self.disconnect()
            return False
        if reply:
            self._write(reply)
            self._TcpConnection__trySendBuffer()
        getattr(self, _BUFFER).extend(plain)
        return True

    def _TcpConnection__tryReadBuffer(self):  # noqa: N802 - overrides PySyncObj's private read loop
        self._burst = 0
        _TcpConnection._TcpConnection__tryReadBuffer(self)

    def _TcpConnection__processRead(self):  # noqa: N802 - overrides PySyncObj's private read
        buffer = getattr(self, _BUFFER)
        if type(buffer) is bytes and self.encryptor is None:
            buffer = bytearray(buffer)
            setattr(self, _BUFFER, buffer)
        before = len(buffer)
        more = self._read_sealed() if self._channel is not None else _TcpConnection._TcpConnection__processRead(self)
        if not more:
            return more  # nothing read (EAGAIN), or disconnected (buffer emptied)
        buffer = getattr(self, _BUFFER)
        self._received += len(buffer) - before
        self._burst += len(buffer) - before
        dropped = self._received - len(buffer)  # bytes of whole frames already decoded
        while True:
            at = self._next_header - dropped
            if at + _FRAME_HEADER.size > len(buffer):
                return self._burst < READ_BURST_BYTES
            (length,) = _FRAME_HEADER.unpack_from(buffer, at)
            first = self._accepted and self._next_header == 0
            limit = FIRST_FRAME_BYTES if first else _limits.max_frame_bytes
            if length < 0 or length > limit:
                THROTTLED.warning("frame", f"raft: closed a connection from {_peer_name(self)}: a frame "
                                           f"announced {length} bytes (limit {limit})")
                self.disconnect()
                return False
            self._next_header += _FRAME_HEADER.size + length

    def _TcpConnection__processParseMessage(self):  # noqa: N802 - overrides PySyncObj's private parse
        _decoding.conn = self
        try:
            return _TcpConnection._TcpConnection__processParseMessage(self)
        finally:
            _decoding.conn = None


# PySyncObj listens with a backlog of 5 and accepts one connection per poll: a few strangers
# connecting in a loop kept the queue full, and a peer's reconnect waited behind them.
LISTEN_BACKLOG = 128
ACCEPT_BURST = 32


class GuardedServer(_TcpServer):
    """PySyncObj's TcpServer with a deeper accept queue, several accepts per poll, and an accept
    error (EMFILE: out of file descriptors) logged and survived: PySyncObj stopped listening for
    good on any accept error, so one burst of connections could cut a node off its cluster."""

    def bind(self):
        super().bind()
        self._TcpServer__socket.listen(LISTEN_BACKLOG)

    def _TcpServer__onNewConnection(self, descr, event):  # noqa: N802 - overrides PySyncObj's private accept
        if event & POLL_EVENT_TYPE.ERROR:
            self.unbind()
            return
        for _ in range(ACCEPT_BURST):
            try:
                sock, _addr = self._TcpServer__socket.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                THROTTLED.warning("accept", f"raft: cannot accept a connection: {exc.strerror}")
                return
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self._TcpServer__sendBufferSize)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self._TcpServer__recvBufferSize)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(False)
            conn = GuardedConnection(poller=self._TcpServer__poller, socket=sock,
                                     timeout=self._TcpServer__connectionTimeout,
                                     sendBufferSize=self._TcpServer__sendBufferSize,
                                     recvBufferSize=self._TcpServer__recvBufferSize,
                                     keepalive=self._TcpServer__keepalive)
            self._TcpServer__onNewConnectionCallback(conn)


def limits() -> WireLimits:
    return _limits


def install(wire_limits: WireLimits | None = None, keyring: Keyring | None = None) -> None:
    """Make PySyncObj decode the wire through this module (idempotent; for the whole process).
    With a `keyring`, every connection opened from now on is authenticated and encrypted."""
    global _limits, _keyring
    if wire_limits is not None:
        _limits = wire_limits
    _keyring = keyring
    _pysyncobj_tcp_connection.pickle = MESSAGES
    _pysyncobj_tcp_connection.zlib = ZLIB
    _pysyncobj_syncobj.pickle = ENTRIES
    _pysyncobj_tcp_server.TcpConnection = GuardedConnection
    _pysyncobj_transport.TcpConnection = GuardedConnection
    _pysyncobj_transport.TcpServer = GuardedServer


def installed() -> bool:
    return (_pysyncobj_tcp_connection.pickle is MESSAGES and _pysyncobj_tcp_connection.zlib is ZLIB
            and _pysyncobj_syncobj.pickle is ENTRIES and _pysyncobj_tcp_server.TcpConnection is GuardedConnection
            and _pysyncobj_transport.TcpConnection is GuardedConnection
            and _pysyncobj_transport.TcpServer is GuardedServer)


def uninstall() -> None:
    """Tests only: PySyncObj's own decoding back (the hostile-peer test proves it matters)."""
    _pysyncobj_tcp_connection.pickle = _pysyncobj_pickle
    _pysyncobj_tcp_connection.zlib = zlib
    _pysyncobj_syncobj.pickle = _pysyncobj_pickle
    _pysyncobj_tcp_server.TcpConnection = _TcpConnection
    _pysyncobj_transport.TcpConnection = _TcpConnection
    _pysyncobj_transport.TcpServer = _TcpServer

