"""node.engine.wire: what a peer's bytes can decode to, and the transport's shape checks.

A real SyncObj fed hostile frames on a raw socket is here too; a whole cluster is in
tests/fault/test_hostile_peer.py.
"""

import os
import pickle
import socket
import struct
import threading
import time
import zlib

import pysyncobj.pickle
import pysyncobj.syncobj
import pysyncobj.tcp_connection
import pytest
from pysyncobj import SyncObj, SyncObjConf
from pysyncobj.node import TCPNode

from node.engine import wire
from node.engine.journal import DurableJournal
from node.engine.journal_seam import journal_installed
from node.engine.replicated import ReplicatedLog
from node.engine.transport import DurableTransport, well_formed
from node.membership import Standing
from tests.support.cluster import HOST, free_ports


class WritesAFile:
    """Unpickling this calls open(path, "w"): what an attacker's pickle would do."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


class RunsAShellCommand:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


# Every message shape raftkv exchanges (NOTES.md, "The wire"), as PySyncObj pickles them.
MESSAGES = [
    "127.0.0.1:4321", "readonly",
    {"type": "append_entries", "term": 3, "commit_index": 7, "prevLogIdx": 6, "prevLogTerm": 3,
     "entries": [(b"\x00" + pickle.dumps((0, (b"payload\xff",)), 2), 7, 3), (b"\x01", 8, 3)]},
    {"type": "append_entries", "term": 3, "commit_index": 7, "prevLogIdx": 6, "prevLogTerm": 3, "entries": []},
    {"type": "append_entries", "term": 3, "commit_index": 7, "prevLogIdx": 6, "prevLogTerm": 3,
     "transmission": "start", "data": os.urandom(1000)},
    {"type": "append_entries", "term": 3, "commit_index": 7, "serialized": (os.urandom(1000), True, False)},
    {"type": "append_entries", "term": 3, "commit_index": 7, "serialized": None},
    {"type": "next_node_idx", "next_node_idx": 9, "reset": False, "success": True},
    {"type": "request_vote", "term": 4, "last_log_index": 9, "last_log_term": 3},
    {"type": "response_vote", "term": 4},
    {"type": "timeout_now", "term": 4},
    {"type": "apply_command", "command": b"\x00" + pickle.dumps((0, (b"",)), 2), "request_id": 12},
    {"type": "apply_command_response", "request_id": 12, "log_idx": 9, "log_term": 3},
    {"type": "apply_command_response", "request_id": 12, "error": 4},
    {"type": "raftkv_keepalive", "from": "127.0.0.1:4321", "cluster": "c-1", "members": ["a:1"], "voters": ["a:1"],
     "learners": [], "replayed": True, "applied": 9, "term": 4},
    {"type": "raftkv_removed"},
    {"float": 1.5, "big": 2 ** 70, "neg": -1, "none": None, "empty": b"", "nested": [[(), {}]]},
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: m.get("type", "other") if isinstance(m, dict) else m)
@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_every_message_shape_decodes_as_it_was_sent(message, protocol):
    assert wire.loads(pickle.dumps(message, protocol)) == message


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: m.get("type", "other") if isinstance(m, dict) else m)
def test_our_frames_read_back_through_our_decoder_and_pysyncobjs_own(message):
    frame = wire.encode_frame(message)
    (length,) = struct.unpack("i", frame[:4])
    assert length == len(frame) - 4
    assert wire.loads(wire.decompress(frame[4:])) == message
    # what PySyncObj itself (and a raftkv node from before protocol 4 and stored frames) reads
    assert pysyncobj.pickle.loads(zlib.decompress(frame[4:])) == message


def test_small_frames_are_stored_and_big_ones_compressed():
    small = {"type": "next_node_idx", "next_node_idx": 9, "reset": False, "success": True}
    assert wire.encode_frame(small)[4:6] == b"\x78\x01"  # a stored stream: the pickle is in it as is
    assert pickle.dumps(small, wire.WIRE_PICKLE_PROTOCOL) in wire.encode_frame(small)
    piece = b"a" * wire.COMPRESS_FROM_BYTES
    big = {"type": "append_entries", "term": 1, "commit_index": 1, "serialized": (piece, True, True)}
    frame = wire.encode_frame(big)
    assert len(frame) < wire.COMPRESS_FROM_BYTES // 10
    assert wire.loads(wire.decompress(frame[4:])) == big


@pytest.mark.parametrize("size", [0, 1, 0xFFFF, 0x10000, 200_000])
def test_a_stored_stream_of_any_size_is_what_zlib_reads_back(size):
    data = os.urandom(size)
    assert zlib.decompress(wire.stored_zlib(data)) == data
    assert wire.decompress(wire.stored_zlib(data)) == data


def test_pysyncobj_pickles_bytes_through_the_two_globals_the_wire_allows():
    # Protocol 2 has no bytes opcode: b"..." is _codecs.encode(str, "latin1") and b"" is bytes().
    assert b"_codecs\nencode" in pysyncobj.pickle.dumps(b"x") and b"bytes" in pysyncobj.pickle.dumps(b"")
    assert wire.loads(pysyncobj.pickle.dumps(bytes(range(256)))) == bytes(range(256))


@pytest.mark.parametrize("make", [WritesAFile, RunsAShellCommand])
def test_a_pickle_that_would_run_code_is_refused_and_runs_nothing(tmp_path, make):
    path = tmp_path / "pwned"
    evil = pickle.dumps({"type": "append_entries", "x": make(str(path))}, 2)
    with pytest.raises(wire.RefusedGlobal):
        wire.loads(evil)
    assert not path.exists()


@pytest.mark.parametrize("value", [TCPNode("127.0.0.1:1"), {1, 2}, bytearray(b"x"), ValueError("x"), print])
def test_no_class_instance_or_function_comes_out(value):
    with pytest.raises(pickle.UnpicklingError):
        wire.loads(pickle.dumps(value, 2))


@pytest.mark.parametrize("forged", [
    b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00xX\x04\x00\x00\x00zlib\x86R.",  # another codec
    b"\x80\x02c_codecs\nencode\nK\x01X\x06\x00\x00\x00latin1\x86R.",  # not a str
    b"\x80\x02c__builtin__\nbytes\nJ\x00\x00\x00@\x85R.",  # bytes(1 GiB)
    b"\x80\x02cbuiltins\neval\nX\x01\x00\x00\x001\x85R.",
    b"\x80\x02X\x01\x00\x00\x00xQ.",  # a persistent id
])
def test_the_allowed_globals_do_only_what_protocol_2_bytes_need(forged):
    with pytest.raises(pickle.UnpicklingError):
        wire.loads(forged)


def test_log_entries_of_types_raftkv_never_writes_are_refused():
    membership = b"\x02" + pickle.dumps(["add", "a:1", "a:1"], 2)
    with pytest.raises(pickle.UnpicklingError):  # a leader's entry sent in pieces, reassembled
        wire.ENTRIES.loads(pickle.dumps((membership, 5, 2), 2))
    regular = b"\x00" + pickle.dumps((0, (b"x",)), 2)
    assert wire.ENTRIES.loads(pickle.dumps((regular, 5, 2), 2)) == (regular, 5, 2)
    assert wire.ENTRIES.loads(regular[1:]) == (0, (b"x",))


def test_the_transport_takes_only_the_shapes_raftkv_sends():
    regular = b"\x00" + pickle.dumps((0, (b"x",)), 2)
    assert all(well_formed(m) for m in MESSAGES if isinstance(m, dict) and "type" in m)
    for bad in (["status"], "x", None, {"no": "type"}, {"type": 5},
                {"type": "append_entries", "entries": [(b"\x02" + pickle.dumps(["rem", "a:1", "a:1"], 2), 5, 2)]},
                {"type": "append_entries", "entries": [(b"", 5, 2)]},
                {"type": "append_entries", "entries": [(regular, "5", 2)]},
                {"type": "append_entries", "entries": ((regular, 5, 2),)},
                {"type": "apply_command", "command": b"\x02" + pickle.dumps(["rem", "a:1", "a:1"], 2)},
                {"type": "apply_command", "command": b"\x03" + pickle.dumps(5, 2)},
                {"type": "apply_command", "command": b"\x00" + pickle.dumps((7, (b"x",)), 2)},
                {"type": "apply_command", "command": b"\x00" + pickle.dumps((False, (b"x",)), 2)},
                {"type": "apply_command", "command": b"\x00garbage"},
                # what the C unpickler builds without a global (test_wire_fuzz.py found them)
                {"type": "request_vote", "term": wire.loads(b"c_codecs\nencode\n.")},  # a stand-in, uncalled
                {"type": "request_vote", "term": {1, 2}}, {"type": "raftkv_keepalive", "members": frozenset()},
                {"type": "append_entries", "data": bytearray(b"x")}, {"type": "request_vote", 5: 1},
                {"type": "raftkv_keepalive", "members": {1: "a"}},
                {"type": "raftkv_keepalive", "members": [[[["a"]]]]},  # deeper than any message
                {"type": "append_entries", "entries": [], "x": wire.loads(b"(" * 100_000 + b"l" * 100_000 + b".")}):
        assert not well_formed(bad), bad


def test_install_swaps_the_names_pysyncobj_decodes_with():
    wire.install()
    assert wire.installed()
    assert pysyncobj.tcp_connection.pickle is wire.MESSAGES and pysyncobj.syncobj.pickle is wire.ENTRIES
    # What PySyncObj still calls on them works as before, in protocol 4 (bytes need no global),
    # which PySyncObj's own decoder reads as well.
    for namespace in (wire.MESSAGES, wire.ENTRIES):
        encoded = namespace.dumps({"a": b"x\xff"})
        assert encoded.startswith(b"\x80\x04") and b"_codecs" not in encoded
        assert pysyncobj.pickle.loads(encoded) == wire.loads(encoded) == {"a": b"x\xff"}


def test_refusals_are_logged_once_per_period(caplog):
    throttled = wire._Throttled(every_s=60)
    with caplog.at_level("WARNING", logger="raftkv.wire"):
        for _ in range(100):
            throttled.warning("k", "refused")
    assert [r.getMessage() for r in caplog.records] == ["refused"]
    throttled._next["k"] = 0.0
    with caplog.at_level("WARNING", logger="raftkv.wire"):
        throttled.warning("k", "refused")
    assert caplog.records[-1].getMessage() == "refused (99 more since the last such line)"


# -- a real SyncObj, hostile bytes on its Raft port ----------------------------------------------


def frame(payload: bytes) -> bytes:
    return struct.pack("i", len(payload)) + payload


# The peer's other voters: it dials the lower address itself, the greater one dials it.
DIALED, DIALS_US = "127.0.0.1:1", "127.0.0.2:1"


@pytest.fixture
def lone_peer(tmp_path):
    wire.install()
    (port,) = free_ports(1)
    address = f"{HOST}:{port}"
    assert DIALED < address < DIALS_US
    journal = DurableJournal(str(tmp_path / "journal"))
    conf = SyncObjConf(autoTick=False, bindAddress=address, dynamicMembershipChange=True, journalFile=journal.path,
                       appendEntriesUseBatch=False)
    transports = []

    def make_transport(syncobj, self_node, other_nodes):
        transports.append(DurableTransport(syncobj, self_node, other_nodes, journal=journal, standing=Standing()))
        return transports[-1]

    with journal_installed(journal):
        syncobj = SyncObj(address, [DIALED, DIALS_US], conf=conf, consumers=[ReplicatedLog(lambda i, p: None)],
                          transportClass=make_transport)
    for _ in range(20):
        syncobj.doTick(0.01)  # binds
    yield syncobj, port, DIALS_US
    syncobj.destroy()


def closed_by_peer(sock: socket.socket, syncobj, seconds: float = 3.0) -> bool:
    sock.settimeout(0.02)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        syncobj.doTick(0.01)
        try:
            if sock.recv(65536) == b"":
                return True
        except TimeoutError:
            continue
        except ConnectionResetError:
            return True
    return False


def identify(sock, syncobj, address):
    sock.sendall(frame(zlib.compress(pickle.dumps(address, 2), 3)))
    for _ in range(5):
        syncobj.doTick(0.01)


@pytest.mark.parametrize("identity", [None, DIALS_US, "readonly"])
def test_a_code_running_frame_is_dropped_with_its_connection(lone_peer, tmp_path, identity):
    syncobj, port, _member = lone_peer
    path = tmp_path / "pwned"
    with socket.create_connection((HOST, port)) as sock:
        if identity is not None:  # an address first, as a real peer would
            identify(sock, syncobj, identity)
            assert not closed_by_peer(sock, syncobj, seconds=0.2)
        sock.sendall(frame(zlib.compress(pickle.dumps(RunsAShellCommand(str(path)), 2), 3)))
        assert closed_by_peer(sock, syncobj)
    assert not path.exists()


def test_utility_commands_from_a_stranger_are_refused(lone_peer):
    syncobj, port, _member = lone_peer
    with socket.create_connection((HOST, port)) as sock:
        sock.sendall(frame(zlib.compress(pickle.dumps(["remove", DIALED], 2), 3)))
        assert closed_by_peer(sock, syncobj)
    assert {n.address for n in syncobj._SyncObj__otherNodes} == {DIALED, DIALS_US}


def test_a_connection_claiming_a_peer_this_node_dials_is_refused(lone_peer):
    """Only the greater address dials; PySyncObj took the claim, and later redialled that peer on
    the accepted connection object, which never says who it is: the peer refused the link for good."""
    syncobj, port, _member = lone_peer
    transport = syncobj._SyncObj__transport
    dialed = transport._nodeAddrToNode[DIALED]
    link = transport._connections[dialed]
    with socket.create_connection((HOST, port)) as sock:
        identify(sock, syncobj, DIALED)
        assert closed_by_peer(sock, syncobj, seconds=1.0)
    assert transport._connections[dialed] is link


# -- frame limits ----------------------------------------------------------------------------------




@pytest.fixture
def small_limits():
    wire.install(wire.WireLimits(max_frame_bytes=1 << 20, max_message_bytes=2 << 20))
    yield wire.limits()
    wire.install(wire.WireLimits.for_entries())


@pytest.mark.parametrize("length", [0x7FFFFFFF, -0x80000000, -1, 4097])
def test_a_forged_first_frame_length_closes_the_connection_at_once(lone_peer, length):
    syncobj, port, _member = lone_peer
    with socket.create_connection((HOST, port)) as sock:
        sock.sendall(struct.pack("i", length) + b"\0" * 1000)
        assert closed_by_peer(sock, syncobj, seconds=1.0)


def test_a_frame_over_the_limit_after_identification_closes_the_connection(lone_peer, small_limits):
    syncobj, port, member = lone_peer
    with socket.create_connection((HOST, port)) as sock:
        identify(sock, syncobj, member)
        # Several good frames and then a forged header, all in one read.
        good = frame(zlib.compress(pickle.dumps({"type": "noise", "data": os.urandom(1000)}, 2), 3))
        sock.sendall(good * 20 + struct.pack("i", small_limits.max_frame_bytes + 1))
        assert closed_by_peer(sock, syncobj, seconds=1.0)


def test_frames_within_the_limit_keep_the_connection(lone_peer, small_limits):
    syncobj, port, member = lone_peer
    with socket.create_connection((HOST, port)) as sock:
        identify(sock, syncobj, member)
        big = frame(zlib.compress(pickle.dumps({"type": "noise", "data": os.urandom(600_000)}, 2), 3))
        small = frame(zlib.compress(pickle.dumps({"type": "noise"}, 2), 3))
        sock.sendall(small * 300 + big + small * 300 + big)
        assert not closed_by_peer(sock, syncobj, seconds=1.0)


def test_a_zlib_bomb_stops_at_the_message_limit(lone_peer, small_limits):
    syncobj, port, member = lone_peer
    bomb = zlib.compress(bytes(small_limits.max_message_bytes + 1), 9)
    assert len(bomb) < 10_000
    with pytest.raises(wire.FrameTooLarge):
        wire.decompress(bomb)
    with socket.create_connection((HOST, port)) as sock:
        identify(sock, syncobj, member)
        sock.sendall(frame(bomb))
        assert closed_by_peer(sock, syncobj, seconds=1.0)


def test_refused_frames_log_one_line_not_one_per_attempt(lone_peer, caplog):
    syncobj, port, _member = lone_peer
    wire.THROTTLED._next.clear()
    with caplog.at_level("WARNING", logger="raftkv.wire"):
        for _ in range(30):
            with socket.create_connection((HOST, port)) as sock:
                sock.sendall(struct.pack("i", 0x7FFFFFFF))
                assert closed_by_peer(sock, syncobj, seconds=1.0)
    lines = [r.getMessage() for r in caplog.records if r.name == "raftkv.wire"]
    assert len(lines) == 1 and "announced 2147483647 bytes" in lines[0]


def test_a_big_frame_does_not_hold_the_tick_thread(lone_peer):
    """PySyncObj's bytes buffer, grown 8 KiB at a time in one poll, held a tick 8.8 s for 32 MiB."""
    syncobj, port, member = lone_peer
    size = 32 << 20
    with socket.create_connection((HOST, port)) as sock:
        identify(sock, syncobj, member)

        def send():
            try:
                sock.sendall(struct.pack("i", size) + os.urandom(1 << 20) * 32)
            except OSError:
                pass
        sender = threading.Thread(target=send)
        sender.start()
        worst = 0.0
        deadline = time.monotonic() + 30
        while sender.is_alive() and time.monotonic() < deadline:
            started = time.monotonic()
            syncobj.doTick(0.0)
            worst = max(worst, time.monotonic() - started)
        sender.join()
    assert worst < 1.5
