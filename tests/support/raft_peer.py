"""A test's own Raft peer: a raw connection to a node's Raft port, with or without the secret."""

from __future__ import annotations

import socket

from node.engine.peer_auth import Keyring, SecureChannel


def raft_address(node) -> tuple[str, int]:
    host, port = node.raft.rsplit(":", 1)
    return host, int(port)


def secure_session(node, secret_file: str) -> tuple[socket.socket, SecureChannel]:
    """A connection to `node` through the handshake with the secrets in `secret_file`, as a peer
    would make it; AssertionError when the node hangs up during the handshake."""
    with open(secret_file) as f:
        channel = SecureChannel(Keyring.parse(f.read(), secret_file), dialer=True, max_record_bytes=2 ** 31)
    sock = socket.create_connection(raft_address(node), timeout=5)
    try:
        sock.sendall(channel.opening())
        while not channel.open:
            data = sock.recv(65536)
            assert data, "the node hung up during the handshake"
            reply, _ = channel.receive(data)
            sock.sendall(reply)
    except BaseException:
        sock.close()
        raise
    return sock, channel
