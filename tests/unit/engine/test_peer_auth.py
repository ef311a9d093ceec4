"""The Raft wire's handshake and records (node/engine/peer_auth.py), driven as bytes."""

import pytest

from node.engine.peer_auth import HELLO_BYTES, Keyring, PeerAuthError, SecretError, SecureChannel, new_secret

OLD, NEW = "o" * 32, "n" * 32


def pair(dialer_secrets: str, acceptor_secrets: str, limit: int = 1 << 20):
    return (SecureChannel(Keyring.parse(dialer_secrets, "d"), dialer=True, max_record_bytes=limit),
            SecureChannel(Keyring.parse(acceptor_secrets, "a"), dialer=False, max_record_bytes=limit))


def handshake(dialer: SecureChannel, acceptor: SecureChannel, first: bytes = b"") -> tuple[bytes, bytes]:
    """Run the handshake with `first` sealed by the dialer before it; (what each side received)."""
    to_acceptor = dialer.opening() + dialer.seal(first)
    reply, got_a = acceptor.receive(to_acceptor)
    assert reply == b"" and got_a == b""  # the acceptor says nothing but its hello until the dialer proves
    proof, got_d = dialer.receive(acceptor.opening())
    reply, got_a = acceptor.receive(proof)
    _, more = dialer.receive(reply)
    return got_a, got_d + more


def test_both_sides_open_and_frames_pass_in_order_both_ways():
    dialer, acceptor = pair(NEW, NEW)
    got_a, _ = handshake(dialer, acceptor, b"address")
    assert got_a == b"address" and dialer.open and acceptor.open
    _, plain = acceptor.receive(dialer.seal(b"one") + dialer.seal(b"two"))
    assert plain == b"onetwo"
    sealed = acceptor.seal(b"back")
    assert b"back" not in sealed  # encrypted
    assert dialer.receive(sealed[:5])[1] == b"" and dialer.receive(sealed[5:])[1] == b"back"


@pytest.mark.parametrize("dialer_keys,acceptor_keys", [
    (OLD, f"{OLD}\n{NEW}"), (OLD, f"{NEW}\n{OLD}"), (f"{NEW}\n{OLD}", f"{OLD}\n{NEW}"), (NEW, f"{OLD},{NEW}")])
def test_rotation_any_secret_of_the_acceptor_matches_the_dialers_first(dialer_keys, acceptor_keys):
    dialer, acceptor = pair(dialer_keys, acceptor_keys)
    assert handshake(dialer, acceptor, b"hi")[0] == b"hi"
    assert dialer.receive(acceptor.seal(b"ok"))[1] == b"ok"


def test_a_dialer_without_the_secret_is_refused_and_nothing_it_sealed_is_opened():
    dialer, acceptor = pair(OLD, NEW)
    acceptor.receive(dialer.opening() + dialer.seal(b"x"))
    proof, _ = dialer.receive(acceptor.opening())
    with pytest.raises(PeerAuthError, match="did not prove the cluster secret") as caught:
        acceptor.receive(proof)
    assert caught.value.kind == "secret"


def test_an_acceptor_without_the_secret_is_refused_by_the_dialer():
    dialer, acceptor = pair(NEW, OLD)
    proof, _ = dialer.receive(acceptor.opening())
    fake = SecureChannel(Keyring.parse(OLD, "x"), dialer=False, max_record_bytes=1 << 20)
    fake.receive(dialer.opening())
    with pytest.raises(PeerAuthError):
        fake.receive(proof)  # the fake cannot match the proof either way...
    with pytest.raises(PeerAuthError, match="did not prove"):
        dialer.receive(b"\0" * 32)  # ...and a made-up acceptor proof is refused


@pytest.mark.parametrize("stranger", [
    b"\x10\x00\x00\x00x\x9c", b"GET / HTTP/1.1\r\n", b"raftkv-peer/2\n", bytes(HELLO_BYTES)])
def test_a_stranger_that_does_not_speak_the_handshake_is_refused_at_its_first_bytes(stranger):
    _, acceptor = pair(NEW, NEW)
    with pytest.raises(PeerAuthError) as caught:
        acceptor.receive(stranger)
    assert caught.value.kind == "plain"


def test_replayed_altered_and_oversized_records_close_the_channel():
    dialer, acceptor = pair(NEW, NEW, limit=1000)
    handshake(dialer, acceptor)
    record = dialer.seal(b"frame")
    assert acceptor.receive(record)[1] == b"frame"
    with pytest.raises(PeerAuthError, match="failed authentication"):
        acceptor.receive(record)  # the same record again: its number is taken
    dialer, acceptor = pair(NEW, NEW, limit=1000)
    handshake(dialer, acceptor)
    altered = bytearray(dialer.seal(b"frame"))
    altered[-3] ^= 0x40
    with pytest.raises(PeerAuthError, match="failed authentication"):
        acceptor.receive(bytes(altered))
    dialer, acceptor = pair(NEW, NEW, limit=1000)
    handshake(dialer, acceptor)
    with pytest.raises(PeerAuthError, match="announced 2147483648 bytes"):  # refused before it is buffered
        acceptor.receive((2 ** 31).to_bytes(4, "big"))


def test_a_connection_to_another_node_cannot_be_replayed_here():
    """Keys are per connection: records sealed for one acceptor fail on another with the same secret."""
    dialer, acceptor = pair(NEW, NEW)
    handshake(dialer, acceptor)
    other_dialer, other = pair(NEW, NEW)
    handshake(other_dialer, other)
    with pytest.raises(PeerAuthError):
        other.receive(dialer.seal(b"frame"))


def test_keyring_parsing():
    assert Keyring.parse(f"# rotated 2026-12\n{NEW}\n\n{OLD}\n", "f").secrets == (NEW.encode(), OLD.encode())
    assert len(new_secret()) == 64 and Keyring.parse(new_secret(), "f").primary
    with pytest.raises(SecretError, match="at least 16 bytes"):
        Keyring.parse("short", "RAFTKV_CLUSTER_SECRET")
    with pytest.raises(SecretError, match="no cluster secret"):
        Keyring.parse("# nothing\n\n", "f")
