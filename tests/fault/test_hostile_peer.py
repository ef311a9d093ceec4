"""A stranger on a follower's Raft port: code in a pickle, a forged identity, a 2 GiB frame,
random bytes. Nothing runs, nothing waits, and the follower keeps serving and following.

(PySyncObj unpickled every frame: before node.engine.wire, (a) and (b) created the file.)
"""

from __future__ import annotations

import os
import pickle
import socket
import struct
import time
import zlib

import pytest
import requests

from tests.support.cluster import Cluster


class CreatesAFile:
    """Unpickling this runs a shell command in the unpickling process."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


class OpensAFile:
    """Unpickling this calls open(path, "w")."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def framed(message, protocol: int = 2) -> bytes:
    """A frame as PySyncObj writes one: 4-byte native int length, then zlib of a pickle."""
    data = zlib.compress(pickle.dumps(message, protocol), 3)
    return struct.pack("i", len(data)) + data


def raft_address(node) -> tuple[str, int]:
    host, port = node.raft.rsplit(":", 1)
    return host, int(port)


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """The node hung up (EOF or reset) within `seconds`; whatever it sent before is skipped."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            if sock.recv(65536) == b"":
                return True
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True
    return False


def send_and_expect_hang_up(node, *chunks: bytes, pause_s: float = 0.3, keep_sending: bytes = b"") -> None:
    with socket.create_connection(raft_address(node), timeout=5) as sock:
        for chunk in chunks:
            sock.sendall(chunk)
            time.sleep(pause_s)  # not synchronisation: a gap so the node reads each chunk apart (first frame, payload)
        if keep_sending:
            try:
                for _ in range(64):  # 4 MiB more: the node must not be waiting for them
                    sock.sendall(keep_sending)
            except OSError:
                pass  # hung up already
        assert closed_within(sock, 5.0), f"the node kept a connection that sent {chunks[-1][:16]!r}..."


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(str(tmp_path / "c")).start()
    try:
        c.leader()
        yield c
    finally:
        c.stop()


def test_a_hostile_peer_runs_nothing_and_the_follower_stays_in_the_cluster(cluster, tmp_path):
    leader = cluster.leader()
    follower, other = cluster.followers()
    marker = tmp_path / "pwned"  # what the pickles would create, on this machine, as the node's user
    assert requests.put(f"{follower.url}/v1/kv/before", data=b"1", timeout=10).json() is True

    # (a) a pickle that runs a shell command, as the very first frame
    send_and_expect_hang_up(follower, framed(CreatesAFile(str(marker))))
    send_and_expect_hang_up(follower, framed({"type": "append_entries", "x": OpensAFile(str(marker))}))
    # (b) the same after identifying as a member (PySyncObj's first frame is the sender's address;
    # a member this node dials itself is refused at once) or as a learner ('readonly')
    for who in (leader.raft, other.raft, "readonly"):
        send_and_expect_hang_up(follower, framed(who), framed(CreatesAFile(str(marker))))
        send_and_expect_hang_up(follower, framed(who), framed(OpensAFile(str(marker)), protocol=5))
    # ... or as a utility command, which PySyncObj took from anybody (this one removes a member)
    send_and_expect_hang_up(follower, framed(["remove", other.raft]))
    # (c) a 2 GiB length, first or after identifying, followed by more bytes
    junk = os.urandom(64 * 1024)
    two_gib = struct.pack("<I", 2 ** 31)  # -2**31 as PySyncObj's signed int
    just_under = struct.pack("i", 2 ** 31 - 1)
    for prefix in (two_gib, just_under):
        send_and_expect_hang_up(follower, prefix, keep_sending=junk)
        send_and_expect_hang_up(follower, framed(leader.raft), prefix, keep_sending=junk)
    for _ in range(20):  # a flood of them is logged once, not once per attempt
        send_and_expect_hang_up(follower, just_under, pause_s=0)
    # (d) random bytes
    for _ in range(5):
        send_and_expect_hang_up(follower, os.urandom(4096))

    assert not marker.exists()  # each frame was read and refused before the hang-up; checked again at the end

    # The follower still follows the same leader, serves, and its writes reach the others.
    status = cluster.wait_for("the follower following the leader", lambda: (
        (s := follower.status()) is not None and s["state"] == "follower" and s["leader"] == leader.raft and s))
    assert sorted(m["raft"] for m in status["members"]) == sorted(n.raft for n in cluster.nodes)
    assert status["voting"] and sorted(requests.get(f"{leader.url}/v1/status/peers", timeout=10).json()) == sorted(
        n.raft for n in cluster.nodes)
    r = requests.put(f"{follower.url}/v1/kv/after", data=b"still here", timeout=10)
    assert r.status_code == 200 and r.json() is True
    index = int(requests.get(f"{follower.url}/v1/kv/after", timeout=10).headers["X-Consul-Index"])
    cluster.wait_applied(index)
    for node in cluster.nodes:
        assert requests.get(f"{node.url}/v1/kv/after", params={"raw": "", "stale": ""}, timeout=10).content == (
            b"still here")
    assert requests.get(f"{follower.url}/v1/kv/before", params={"raw": ""}, timeout=10).content == b"1"
    assert not marker.exists()

    with open(follower.log_path, errors="replace") as f:
        log = f.read()
    # 26 refused frames: one line per 10 s (two if the machine is slow), not one per attempt
    assert 1 <= log.count("a frame announced") <= 2, log[-3000:]
    assert "names posix.system" in log and "utility commands are refused" in log
