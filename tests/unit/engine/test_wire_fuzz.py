"""node.engine.wire's decoder fed by hypothesis: random bytes, random pickle programs made of
every opcode (globals that would run code among them), and forged lengths. Whatever comes in,
no code runs, no global but protocol 2's two bytes stand-ins is resolved, and what comes out
is built of builtin data types only (test_wire.py holds the hand-made cases and the sockets).

Found by these tests (issue 12): the allowed stand-ins themselves come out when a pickle names
them without calling them (b"c_codecs\nencode\n."); the C unpickler builds sets, frozensets and
bytearrays from protocol 4/5 opcodes without any global and nests as deep as the frame allows.
The decoder lets them through (a check inside it would cost 15-20% of decoding a batch of small
entries); the transport refuses every message that holds one before PySyncObj sees it
(node.engine.transport.plain, tests in test_wire.py). `plain` below accepts them by name, so
that anything else fails here. Still open, and only for a peer that holds the cluster secret: a
dict whose integer keys share a hash is built in quadratic time (16,000 keys, 223 KB: 1.7 s of
the tick thread; SECURITY.md).
"""

from __future__ import annotations

import os
import pickle
import struct
import tempfile
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.engine import wire
from tests.support.fuzz import fuzz_settings

# What the C unpickler can build without resolving a global (test_wire.py: the messages use the
# first nine; the last three are the gap reported above).
BUILTIN_DATA = (dict, list, tuple, str, bytes, int, float, bool, type(None), set, frozenset, bytearray)
CANARY = os.path.join(tempfile.gettempdir(), f"raftkv-wire-canary-{os.getpid()}")  # what the globals below would create

GLOBALS = [b"os\nsystem", b"posix\nsystem", b"builtins\nopen", b"__builtin__\nopen", b"builtins\neval",
           b"builtins\nexec", b"subprocess\nPopen", b"pickle\nloads", b"copyreg\n_reconstructor",
           b"builtins\ngetattr", b"_codecs\nencode", b"builtins\nbytes", b"__builtin__\nbytes",
           b"builtins\nset", b"collections\nOrderedDict", b"node.engine.wire\nloads"]


def text(s: str) -> bytes:
    data = s.encode()
    return b"X" + struct.pack("<I", len(data)) + data  # BINUNICODE


# One opcode each (with its argument); sequences of them are pickle programs, mostly invalid.
OPCODES = st.one_of(
    st.sampled_from([b"(", b")", b"]", b"}", b"t", b"l", b"d", b"a", b"e", b"s", b"u", b"0", b"1", b"2", b"N",
                     b"\x88", b"\x89", b"\x85", b"\x86", b"\x87", b"R", b"b", b"\x81", b"\x92", b"o", b"\x93",
                     b"\x94", b"\x8f", b"\x90", b"\x91", b"Q", b"\x97", b"\x98", b"."]),
    st.sampled_from(GLOBALS).map(lambda g: b"c" + g + b"\n"),
    st.sampled_from(GLOBALS).map(lambda g: text(g.split(b"\n")[0].decode()) + text(g.split(b"\n")[1].decode())),
    st.sampled_from([text(f"touch {CANARY}"), text(CANARY), text("w"), text("latin1"), text("x" * 3)]),
    st.integers(-(2**40), 2**40).map(lambda n: b"J" + struct.pack("<i", max(-(2**31), min(2**31 - 1, n)))),
    st.integers(0, 255).map(lambda n: b"K" + bytes([n])),
    st.integers(0, 7).map(lambda n: b"h" + bytes([n])),  # BINGET
    st.integers(0, 7).map(lambda n: b"q" + bytes([n])),  # BINPUT
    st.integers(0, 3).map(lambda n: b"\x82" + bytes([n])),  # EXT1
    st.binary(max_size=8).map(lambda b: b"C" + bytes([len(b)]) + b),  # SHORT_BINBYTES
    st.sampled_from([2**32 - 1, 2**62, 1 << 33]).map(lambda n: b"\x8e" + struct.pack("<Q", n)),  # BINBYTES8
    st.sampled_from([2**32 - 1, 2**62]).map(lambda n: b"\x95" + struct.pack("<Q", n)),  # FRAME
)


STAND_INS = tuple(wire._ALLOWED_GLOBALS.values())  # reported gap: named but not called, they come out


def plain(value, depth: int = 0) -> bool:
    if depth > 50:
        return True  # deeper than any message (reported gap)
    if type(value) not in BUILTIN_DATA:
        return value in STAND_INS
    if isinstance(value, dict):
        return all(plain(k, depth + 1) and plain(v, depth + 1) for k, v in value.items())
    if isinstance(value, list | tuple | set | frozenset):
        return all(plain(v, depth + 1) for v in value)
    return True


def decode(data: bytes):
    """wire.loads as the connection calls it: any exception is a refusal (the connection closes)."""
    try:
        return True, wire.loads(data)
    except Exception:  # noqa: BLE001 - PySyncObj closes the connection on any error
        return False, None


@fuzz_settings(300)
@given(st.lists(OPCODES, max_size=24), st.sampled_from([b"", b"\x80\x02", b"\x80\x04", b"\x80\x05"]))
def test_random_pickle_programs_run_nothing_and_build_only_builtin_data(program, proto):
    ok, value = decode(proto + b"".join(program) + b".")
    assert not os.path.exists(CANARY)
    assert not ok or plain(value), value


@fuzz_settings(200)
@given(st.binary(max_size=200), st.sampled_from([b"", b"\x80\x02", b"\x80\x04"]))
def test_random_bytes_are_refused_or_builtin_data(data, proto):
    ok, value = decode(proto + data)
    assert not ok or plain(value)


def test_a_refused_global_is_refused_wherever_it_sits():
    # REDUCE, NEWOBJ, OBJ, INST, BUILD and EXT reach a global only through find_class.
    for program in (b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00trueK\x01\x85R.",
                    b"\x80\x04\x8c\x02os\x8c\x06system\x93)\x81.",
                    b"(cos\nsystem\nX\x04\x00\x00\x00trueo.",
                    b"(X\x04\x00\x00\x00trueios\nsystem\n."):
        with pytest.raises(wire.RefusedGlobal):
            wire.loads(program)


@pytest.mark.parametrize("forged", [
    b"\x80\x04\x8e" + struct.pack("<Q", 2**62) + b"x.",  # BINBYTES8
    b"\x80\x04\x8d" + struct.pack("<Q", 2**62) + b"x.",  # BINUNICODE8
    b"\x80\x05\x96" + struct.pack("<Q", 2**62) + b"x.",  # BYTEARRAY8
    b"\x80\x02\x8b" + struct.pack("<i", 2**31 - 1) + b"x.",  # LONG4
    b"\x80\x04\x95" + struct.pack("<Q", 2**62) + b"N.",  # FRAME
    b"\x80\x02X" + struct.pack("<I", 2**32 - 1) + b"x.",  # BINUNICODE
    b"\x80\x02L" + b"9" * 5000 + b"L\n.",  # a 5000-digit LONG: Python's int-from-text limit
    b"\x80\x02" + b"(" * 100_000 + b".",  # a mark-stack bomb
])
def test_forged_lengths_and_bombs_are_refused(forged):
    ok, _ = decode(forged)
    assert not ok


@fuzz_settings(200)
@given(st.binary(max_size=300), st.integers(0, 400), st.integers(0, 255))
def test_damaged_zlib_frames_decompress_within_the_limit_or_are_refused(data, at, byte):
    frame = bytearray(zlib.compress(pickle.dumps({"type": "append_entries", "data": data}, 2)))
    frame[at % len(frame)] = byte
    try:
        out = wire.decompress(bytes(frame))
    except (zlib.error, wire.FrameTooLarge):
        return
    assert len(out) <= wire.limits().max_message_bytes
    ok, value = decode(out)
    assert not ok or plain(value)
