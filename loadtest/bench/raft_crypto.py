"""What authenticating the Raft wire costs per frame: PySyncObj's `password` option against
framings of our own at the connection seam (python -m loadtest.bench.raft_crypto).

* fernet: PySyncObj's option (pysyncobj/encryptor.py): a Fernet token per frame (AES-128-CBC,
  HMAC-SHA256, base64) with a key from PBKDF2-SHA256, 100,000 rounds, fixed salt;
* hmac: HMAC-SHA256 of each frame (stdlib): authenticated, not encrypted;
* aes-gcm, chacha20-poly1305: an AEAD per frame with a counter nonce: authenticated and encrypted.

Each figure is one frame sealed by the sender and opened by the receiver (best of 5), on the
frames a write produces: an `append_entries` per follower carrying the entry, and a
`next_node_idx` back. Needs the `cryptography` package (pip install cryptography).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import pickle
import struct
import time
import zlib


def _frame(value_bytes: int) -> bytes:
    """A compressed append_entries frame carrying one entry with one value, as PySyncObj sends it."""
    command = b"\x00" + pickle.dumps((0, (os.urandom(value_bytes),)), 2)
    message = {"type": "append_entries", "term": 3, "commit_index": 10, "prevLogIdx": 9, "prevLogTerm": 3,
               "entries": [(command, 10, 3)]}
    return zlib.compress(pickle.dumps(message, 2), 3)


ACK = zlib.compress(pickle.dumps({"type": "next_node_idx", "next_node_idx": 11, "reset": False, "success": True}, 2), 3)


def _best_us(fn, data: bytes, rounds: int) -> float:
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(rounds):
            fn(data)
        best = min(best, (time.perf_counter() - started) / rounds)
    return best * 1e6


def main() -> None:
    from cryptography.fernet import Fernet
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
    from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

    started = time.perf_counter()
    kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=b"\x15%q\xe6\xbb\x02\xa6\xf8\x13q\x90\xcf6+\x1e\xeb",
                     iterations=100000)
    fernet = Fernet(base64.urlsafe_b64encode(kdf.derive(b"cluster secret")))
    kdf_ms = (time.perf_counter() - started) * 1000
    key = os.urandom(32)
    aes, chacha = AESGCM(key), ChaCha20Poly1305(key)
    counter = [0]

    def nonce() -> bytes:
        counter[0] += 1
        return struct.pack(">4xQ", counter[0])

    def fernet_frame(data: bytes) -> None:
        token = fernet.encrypt_at_time(data, int(time.monotonic()))
        fernet.extract_timestamp(token)
        fernet.decrypt(token)

    def hmac_frame(data: bytes) -> None:
        tag = hmac.new(key, data, hashlib.sha256).digest()
        assert hmac.compare_digest(tag, hmac.new(key, data, hashlib.sha256).digest())

    def aead(cipher):
        def seal_and_open(data: bytes) -> None:
            n = nonce()
            cipher.decrypt(n, cipher.encrypt(n, data, None), None)
        return seal_and_open

    schemes = {"fernet": fernet_frame, "hmac": hmac_frame, "aes-gcm": aead(aes), "chacha20": aead(chacha)}
    print(f"PySyncObj password: key derivation {kdf_ms:.0f} ms at start")
    print(f"{'frame':>26} {'bytes':>9} " + " ".join(f"{k:>9}" for k in schemes) + "   (us per frame)")
    frames = [("next_node_idx", ACK), ("append_entries, 100 B", _frame(100)), ("append_entries, 4 KiB", _frame(4096)),
              ("append_entries, 64 KiB", _frame(65536)), ("append_entries, 1 MiB", _frame(1 << 20))]
    for name, data in frames:
        rounds = max(20, 2_000_000 // (len(data) + 200))
        figures = " ".join(f"{_best_us(fn, data, rounds):>9.1f}" for fn in schemes.values())
        print(f"{name:>26} {len(data):>9} {figures}")
    small = frames[1][1]
    print("a 3-node write of 100 B (2 append_entries out, 2 acks back; CPU of the whole cluster, us):",
          ", ".join(f"{k} {2 * (_best_us(fn, small, 20000) + _best_us(fn, ACK, 20000)):.0f}"
                    for k, fn in schemes.items()))


if __name__ == "__main__":
    main()
