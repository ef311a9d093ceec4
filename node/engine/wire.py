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
* `pysyncobj.syncobj.pickle`         -> `ENTRIES` (applied commands and reassembled entries;
  an entry tuple whose command type is not one raftkv writes is refused)

Pinned by tests/unit/engine/test_pysyncobj_pins.py and tests/unit/engine/test_wire.py; a
hostile peer is tried against a real cluster by tests/fault/test_hostile_peer.py.
"""

from __future__ import annotations

import io
import logging
import pickle
import threading
import time
import types

import pysyncobj.pickle as _pysyncobj_pickle
import pysyncobj.syncobj as _pysyncobj_syncobj
import pysyncobj.tcp_connection as _pysyncobj_tcp_connection

log = logging.getLogger("raftkv.wire")

# Command type bytes of PySyncObj's log entries (pysyncobj.syncobj._COMMAND_TYPE): raftkv writes
# REGULAR (its one replicated method) and PySyncObj its NO_OP; never MEMBERSHIP (a pickled
# TCPNode) nor VERSION, which only PySyncObj's utility commands create (the transport refuses them).
REGULAR, NO_OP = 0, 1
ENTRY_TYPES = frozenset({REGULAR, NO_OP})


class RefusedGlobal(pickle.UnpicklingError):
    """A peer's pickle named a global (a class or a function) the wire does not allow."""


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


def is_regular_command(command: bytes) -> bool:
    """A REGULAR command as raftkv's one replicated method writes it: (method id 0, (payload,))."""
    try:
        decoded = loads(command[1:])
    except Exception:  # noqa: BLE001 - any undecodable command is simply not one of ours
        return False
    return (command[:1] == bytes([REGULAR]) and type(decoded) is tuple and len(decoded) == 2 and type(decoded[0]) is int
            and decoded[0] == 0
            and type(decoded[1]) is tuple and len(decoded[1]) == 1 and type(decoded[1][0]) is bytes)


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


def _loads_message(data) -> object:
    try:
        return loads(data)
    except RefusedGlobal as exc:
        THROTTLED.warning("global", f"raft: closed a connection: its message names {exc} "
                                    "(only plain types are decoded)")
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


# The names PySyncObj's modules call on their `pickle`: `dumps` and `loads` (`to_bytes` for completeness).
MESSAGES = types.SimpleNamespace(dumps=_pysyncobj_pickle.dumps, loads=_loads_message,
                                 to_bytes=_pysyncobj_pickle.to_bytes)
ENTRIES = types.SimpleNamespace(dumps=_pysyncobj_pickle.dumps, loads=_loads_entry_part,
                                to_bytes=_pysyncobj_pickle.to_bytes)


def install() -> None:
    """Make PySyncObj decode the wire through this module (idempotent; for the whole process)."""
    _pysyncobj_tcp_connection.pickle = MESSAGES
    _pysyncobj_syncobj.pickle = ENTRIES


def installed() -> bool:
    return _pysyncobj_tcp_connection.pickle is MESSAGES and _pysyncobj_syncobj.pickle is ENTRIES


def uninstall() -> None:
    """Tests only: PySyncObj's own decoding back (the hostile-peer test proves it matters)."""
    _pysyncobj_tcp_connection.pickle = _pysyncobj_pickle
    _pysyncobj_syncobj.pickle = _pysyncobj_pickle

