"""Peer authentication and encryption for the Raft wire: a cluster secret, proven and used.

Every Raft connection starts with a handshake in fixed-size raw bytes, before any byte of it
is decoded as a message:

    both sides   -> MAGIC + a 32-byte random nonce                      (the hello)
    dialer       -> HMAC-SHA256(secret, "dialer" | dialer nonce | acceptor nonce)
    acceptor     -> HMAC-SHA256(secret, "acceptor" | both nonces), once the dialer's proof
                    matched one of its secrets; otherwise it hangs up

Then every PySyncObj frame travels as one record: a 4-byte big-endian length, then the frame
sealed with AES-256-GCM under a key of its direction (HKDF-SHA256 of the secret, salted with
both nonces: fresh for every connection), the nonce being the record's number on that
connection. A record that was replayed, reordered, altered or sealed under another key fails
authentication and closes the connection. A stranger without the secret can make a node
buffer one hello and one proof (78 bytes) and nothing else; a record length above the frame
limit closes the connection before it is buffered.

Why this and not PySyncObj's `password`: its Fernet (AES-CBC + HMAC, one PBKDF2 key for the
whole cluster, a fixed salt) costs 39 us per message against 2 us for AES-GCM, and it decrypts
a stranger's first frame (then unpickles it) before anything is proven (measured with
`python -m loadtest.bench.raft_crypto`; node/engine/NOTES.md, "The wire").

Rotation: a keyring holds one or more secrets. A node dials with its first and accepts any of
them, so a rolling change (add the new secret second on every node, then first, then drop the
old one; README "Cluster secret") never splits the cluster.

Pure and socket-free: node.engine.wire.GuardedConnection drives a `SecureChannel` per
connection; tests drive one as a hostile or honest peer.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"raftkv-peer/1\n"
NONCE_BYTES = 32
PROOF_BYTES = 32
TAG_BYTES = 16
HELLO_BYTES = len(MAGIC) + NONCE_BYTES
RECORD_HEADER_BYTES = 4
MIN_SECRET_BYTES = 16  # 128 bits: a proof seen on the wire must not be brute-forced offline


class PeerAuthError(Exception):
    """The other side did not prove the cluster secret, or sent a record that fails authentication.
    `kind` groups the log lines: "plain" (no handshake), "secret" (a wrong proof), "record"."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


class SecretError(ValueError):
    """A cluster secret that cannot be used (too short, empty); the message is one line for the operator."""


@dataclass(frozen=True)
class Keyring:
    """The cluster secrets this node knows: it dials with the first and accepts any."""

    secrets: tuple[bytes, ...]

    @classmethod
    def parse(cls, text: str, source: str) -> Keyring:
        """One secret per line (or comma-separated); blank lines and lines starting with # are skipped."""
        found = []
        for line in text.replace(",", "\n").splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if len(line.encode()) < MIN_SECRET_BYTES:
                raise SecretError(f"{source}: a cluster secret must be at least {MIN_SECRET_BYTES} bytes "
                                  "(make one with: python3 -c 'import secrets; print(secrets.token_hex(32))')")
            found.append(line.encode())
        if not found:
            raise SecretError(f"{source}: no cluster secret in it")
        return cls(tuple(found))

    @property
    def primary(self) -> bytes:
        return self.secrets[0]


def new_secret() -> str:
    """A fresh cluster secret: 256 random bits as 64 hex digits."""
    return secrets.token_hex(32)


def _proof(secret: bytes, role: bytes, dialer_nonce: bytes, acceptor_nonce: bytes) -> bytes:
    return hmac.new(secret, b"raftkv-peer/1 " + role + dialer_nonce + acceptor_nonce, hashlib.sha256).digest()


def _keys(secret: bytes, dialer_nonce: bytes, acceptor_nonce: bytes) -> tuple[AESGCM, AESGCM]:
    """(dialer-to-acceptor, acceptor-to-dialer) ciphers for one connection."""
    material = HKDF(algorithm=hashes.SHA256(), length=64, salt=dialer_nonce + acceptor_nonce,
                    info=b"raftkv-peer/1 keys").derive(secret)
    return AESGCM(material[:32]), AESGCM(material[32:])


_HELLO, _PROOF, _OPEN = "hello", "proof", "open"


class SecureChannel:
    """One connection's handshake and records, as bytes in and bytes out.

    `opening()` is what to send first. `seal(frame)` returns the bytes to send for one
    plaintext frame (nothing until the handshake is done: frames wait in order).
    `receive(data)` takes bytes from the socket and returns (bytes to send, plaintext); it
    raises PeerAuthError when the other side fails to prove the secret or a record fails.
    """

    def __init__(self, keyring: Keyring, dialer: bool, max_record_bytes: int) -> None:
        self._keyring = keyring
        self._dialer = dialer
        self._max_record = max_record_bytes + TAG_BYTES
        self._nonce = os.urandom(NONCE_BYTES)
        self._peer_nonce = b""
        self._secret = keyring.primary
        self._phase = _HELLO
        self._raw = bytearray()
        self._waiting: list[bytes] = []
        self._send_cipher: AESGCM | None = None
        self._recv_cipher: AESGCM | None = None
        self._sent = 0
        self._received = 0

    @property
    def open(self) -> bool:
        return self._phase == _OPEN

    def opening(self) -> bytes:
        return MAGIC + self._nonce

    def seal(self, frame: bytes) -> bytes:
        if self._send_cipher is None:
            self._waiting.append(frame)
            return b""
        return self._record(frame)

    def _record(self, frame: bytes) -> bytes:
        assert self._send_cipher is not None
        sealed = self._send_cipher.encrypt(self._sent.to_bytes(12, "big"), frame, None)
        self._sent += 1
        return len(sealed).to_bytes(RECORD_HEADER_BYTES, "big") + sealed

    def _flush_waiting(self) -> bytes:
        out = b"".join(self._record(frame) for frame in self._waiting)
        self._waiting.clear()
        return out

    def receive(self, data: bytes) -> tuple[bytes, bytes]:
        self._raw += data
        reply = b""
        if self._phase == _HELLO:
            if len(self._raw) < HELLO_BYTES:
                if not MAGIC.startswith(bytes(self._raw[:len(MAGIC)])):
                    raise PeerAuthError("it does not speak raftkv's authenticated wire (no cluster secret?)", "plain")
                return b"", b""
            if self._raw[:len(MAGIC)] != MAGIC:
                raise PeerAuthError("it does not speak raftkv's authenticated wire (no cluster secret?)", "plain")
            self._peer_nonce = bytes(self._raw[len(MAGIC):HELLO_BYTES])
            del self._raw[:HELLO_BYTES]
            self._phase = _PROOF
            if self._dialer:
                reply = _proof(self._secret, b"dialer", self._nonce, self._peer_nonce)
                self._send_cipher, self._recv_cipher = self._ciphers()
                reply += self._flush_waiting()
        if self._phase == _PROOF:
            if len(self._raw) < PROOF_BYTES:
                return reply, b""
            proof = bytes(self._raw[:PROOF_BYTES])
            del self._raw[:PROOF_BYTES]
            if self._dialer:
                if not hmac.compare_digest(proof, _proof(self._secret, b"acceptor", self._nonce, self._peer_nonce)):
                    raise PeerAuthError("it did not prove the cluster secret", "secret")
            else:
                self._secret = self._matching_secret(proof)
                self._recv_cipher, self._send_cipher = self._ciphers()
                reply += _proof(self._secret, b"acceptor", self._peer_nonce, self._nonce) + self._flush_waiting()
            self._phase = _OPEN
        return reply, self._open_records()

    def _matching_secret(self, proof: bytes) -> bytes:
        for secret in self._keyring.secrets:
            if hmac.compare_digest(proof, _proof(secret, b"dialer", self._peer_nonce, self._nonce)):
                return secret
        raise PeerAuthError("it did not prove the cluster secret", "secret")

    def _ciphers(self) -> tuple[AESGCM, AESGCM]:
        """(dialer-to-acceptor, acceptor-to-dialer)."""
        if self._dialer:
            return _keys(self._secret, self._nonce, self._peer_nonce)
        return _keys(self._secret, self._peer_nonce, self._nonce)

    def _open_records(self) -> bytes:
        assert self._recv_cipher is not None
        raw, out, at = self._raw, [], 0
        while len(raw) - at >= RECORD_HEADER_BYTES:
            length = int.from_bytes(raw[at:at + RECORD_HEADER_BYTES], "big")
            if length < TAG_BYTES or length > self._max_record:
                raise PeerAuthError(f"a record announced {length} bytes (limit {self._max_record})", "record")
            end = at + RECORD_HEADER_BYTES + length
            if len(raw) < end:
                break
            try:
                out.append(self._recv_cipher.decrypt(self._received.to_bytes(12, "big"),
                                                     bytes(raw[at + RECORD_HEADER_BYTES:end]), None))
            except InvalidTag:
                raise PeerAuthError("a record failed authentication (altered, replayed or another key)",
                                    "record") from None
            self._received += 1
            at = end
        del raw[:at]
        return b"".join(out)
