"""A stranger on a follower's Raft port: code in a pickle, a forged identity, a 2 GiB frame,
random bytes. Nothing runs, nothing waits, and the follower keeps serving and following.

Twice: on a cluster with a secret, where nothing of a stranger's is even decoded, and where a
peer that knows the secret still cannot send a global; and on a plain wire (loopback, no
secret), where the decoder and the frame limits alone stop all of it.
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

from node.engine.transport import IDENTIFY_WITHIN_S, MAX_UNIDENTIFIED
from tests.support.cluster import Cluster, NodeProcess, free_ports
from tests.support.raft_peer import raft_address, secure_session


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


def make_cluster(root: str, secret: bool):
    c = Cluster(root, secret=secret).start()
    try:
        c.leader()
        yield c
    finally:
        c.stop()


@pytest.fixture
def cluster(tmp_path):
    yield from make_cluster(str(tmp_path / "c"), secret=False)


@pytest.fixture
def secure_cluster(tmp_path):
    yield from make_cluster(str(tmp_path / "c"), secret=True)


def hostile_sequence(follower, leader, other, marker) -> None:
    """(a)-(d): every frame must end in a hang-up."""

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


def still_in_the_cluster(cluster, follower, leader) -> None:
    """The follower still follows the same leader, serves, and its writes reach the others."""
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


def read_log(node) -> str:
    with open(node.log_path, errors="replace") as f:
        return f.read()


def test_a_hostile_peer_runs_nothing_and_the_follower_stays_in_the_cluster(cluster, tmp_path):
    leader = cluster.leader()
    follower, other = cluster.followers()
    marker = tmp_path / "pwned"  # what the pickles would create, on this machine, as the node's user
    assert requests.put(f"{follower.url}/v1/kv/before", data=b"1", timeout=10).json() is True
    hostile_sequence(follower, leader, other, marker)
    assert not marker.exists()  # each frame was read and refused before the hang-up; checked again at the end
    still_in_the_cluster(cluster, follower, leader)
    assert not marker.exists()
    log = read_log(follower)
    # 26 refused frames: one line per 10 s (two if the machine is slow), not one per attempt
    assert 1 <= log.count("a frame announced") <= 2, log[-3000:]
    assert "names posix.system" in log and "utility commands are refused" in log


def test_with_a_secret_a_stranger_is_never_decoded_and_a_peer_with_it_cannot_send_a_global(secure_cluster, tmp_path):
    cluster = secure_cluster
    leader = cluster.leader()
    follower, other = cluster.followers()
    marker = tmp_path / "pwned"
    assert requests.put(f"{follower.url}/v1/kv/before", data=b"1", timeout=10).json() is True
    hostile_sequence(follower, leader, other, marker)
    # a wrong secret: the handshake fails, nothing after it is read
    wrong = tmp_path / "wrong.secret"
    wrong.write_text("f" * 64)
    with pytest.raises(AssertionError, match="hung up"):
        secure_session(follower, str(wrong))[0].close()
    log = read_log(follower)
    assert "does not speak raftkv's authenticated wire" in log and "did not prove the cluster secret" in log
    assert "names posix.system" not in log and "a frame announced" not in log, "a stranger's bytes were decoded"

    # The right secret, then a frame whose pickle names a global, or announces 2 GiB: refused all the same.
    secret_file = cluster.secret_args[1]
    for frames in ([framed("readonly"), framed(CreatesAFile(str(marker)))],
                   [framed("readonly"), framed({"type": "append_entries", "x": OpensAFile(str(marker))})],
                   [framed("readonly"), struct.pack("i", 2 ** 31 - 1) + os.urandom(1024)]):
        sock, channel = secure_session(follower, secret_file)
        with sock:
            for frame in frames:
                sock.sendall(channel.seal(frame))
            assert closed_within(sock, 5.0)
    # an altered record: authentication fails
    sock, channel = secure_session(follower, secret_file)
    with sock:
        record = bytearray(channel.seal(framed("readonly")))
        record[-1] ^= 1
        sock.sendall(bytes(record))
        assert closed_within(sock, 5.0)
    # A flood of connections that never speak: the node keeps following and serving, holds at most
    # MAX_UNIDENTIFIED of them, and closes the rest within IDENTIFY_WITHIN_S.
    flood = [socket.create_connection(raft_address(follower), timeout=5) for _ in range(2 * MAX_UNIDENTIFIED)]
    try:
        assert requests.put(f"{follower.url}/v1/kv/during-flood", data=b"1", timeout=10).json() is True
        for sock in flood:
            assert closed_within(sock, IDENTIFY_WITHIN_S + 5.0)
    finally:
        for sock in flood:
            sock.close()
    still_in_the_cluster(cluster, follower, leader)
    assert not marker.exists()
    log = read_log(follower)
    assert "names posix.system" in log, log[-3000:]
    assert "waiting to identify themselves; closed the oldest" in log and "did not identify itself" in log
    assert "a frame announced" in log and "failed authentication" in log


def test_a_node_without_the_secret_cannot_join_a_cluster_that_has_one(secure_cluster):
    cluster = secure_cluster
    leader = cluster.leader()
    assert requests.put(f"{leader.url}/v1/kv/secret-data", data=b"s", timeout=10).json() is True
    raft, http = free_ports(2)
    root = cluster.root
    stranger = NodeProcess("n4", f"127.0.0.1:{raft}", f"127.0.0.1:{http}", os.path.join(root, "n4"),
                           os.path.join(root, "n4.log"), [], ["--join", ",".join(n.http for n in cluster.nodes)])
    cluster.nodes.append(stranger)
    stranger.start()
    try:
        # It asked to join and was let in as a learner (HTTP carries no secret), then every voter
        # hung up on its Raft connections: it receives nothing and is never promoted.
        cluster.wait_for("the voters refusing n4's connections", lambda: any(
            "does not speak raftkv's authenticated wire" in read_log(n) for n in cluster.nodes[:3]), timeout=20)
        seen = cluster.wait_for("n4 to answer", stranger.status, timeout=20)
        assert seen["leader"] is None and seen["applied_index"] < leader.status()["commit_index"], seen
        r = requests.get(f"{stranger.url}/v1/kv/secret-data", params={"stale": ""}, timeout=10)
        assert r.status_code != 200 and b"secret-data" not in r.content
        servers = requests.get(f"{leader.url}/v1/operator/raft/configuration", timeout=10).json()["Servers"]
        assert not any(s["Address"] == stranger.raft and s["Voter"] for s in servers), servers
        assert requests.put(f"{leader.url}/v1/kv/after", data=b"x", timeout=10).json() is True
    finally:
        stranger.stop()
