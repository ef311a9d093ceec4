"""The cluster secret for `raftkv serve`: where it comes from, and when a node may listen
beyond loopback without one, for Raft and for HTTP.

The secret authenticates and encrypts Raft traffic (node/engine/peer_auth.py). A node whose
Raft port is reachable beyond loopback must have one: without it, anyone who can open that
port could join the conversation. `--insecure-raft` is the operator's explicit word otherwise.
The HTTP port beyond loopback needs a secret of its own: ACL tokens with a default policy of
deny, or TLS client certificates (`--tls-verify-incoming`); `--insecure-http` otherwise.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import stat

from node.engine.peer_auth import Keyring, SecretError

log = logging.getLogger("raftkv")
ENV = "RAFTKV_CLUSTER_SECRET"


def add_arguments(p) -> None:
    p.add_argument("--cluster-secret-file", metavar="FILE",
                   help="the cluster secret (one per line: dial with the first, accept any; README "
                        f"'Cluster secret'); or set {ENV}. Required when Raft listens beyond loopback")
    p.add_argument("--insecure-http", action="store_true",
                   help="listen for HTTP beyond loopback with neither --acl deny nor --tls-verify-incoming: "
                        "anyone who reaches the port can read and write every key")
    p.add_argument("--insecure-raft", action="store_true",
                   help="listen for Raft beyond loopback without a secret: anyone who reaches the port "
                        "can take part in the cluster")


def load(path: str | None, environ=os.environ) -> tuple[bytes, ...]:
    """The secrets from --cluster-secret-file, else from the environment; () when neither. SecretError."""
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
            mode = os.stat(path).st_mode
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise SecretError(f"--cluster-secret-file {path}: {reason}") from None
        keyring = Keyring.parse(text, f"--cluster-secret-file {path}")
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning("cluster secret file %s can be read by other users (chmod 600 it)", path)
        return keyring.secrets
    if environ.get(ENV):
        return Keyring.parse(environ[ENV], ENV).secrets
    return ()


def is_loopback(hostport: str) -> bool:
    """Whether every address HOST resolves to is a loopback address (0.0.0.0 and :: are not)."""
    host = hostport.rpartition(":")[0].strip("[]")
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return False
    return bool(infos) and all(ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos)


def refusal(raft_bind: str, secrets: tuple[bytes, ...], insecure: bool) -> str | None:
    """Why serve must not start with this Raft address and these secrets, or None."""
    if secrets or is_loopback(raft_bind):
        return None
    if insecure:
        log.warning("Raft listens on %s without a cluster secret (--insecure-raft): anyone who can reach that "
                    "port can read the log and take part in the cluster", raft_bind)
        return None
    return (f"refusing to listen for Raft on {raft_bind} without a cluster secret: give --cluster-secret-file FILE "
            f"(or {ENV}), or --insecure-raft to accept anyone who can reach that port")


def http_refusal(http_bind: str, acl_policy: str | None, verify_incoming: bool, insecure: bool) -> str | None:
    """Why serve must not listen for HTTP on `http_bind` as configured, or None."""
    if acl_policy == "deny" or verify_incoming or is_loopback(http_bind):
        return None
    if insecure:
        log.warning("HTTP listens on %s with neither ACLs (--acl deny) nor client certificates (--insecure-http): "
                    "anyone who can reach that port can read and write every key", http_bind)
        return None
    return (f"refusing to listen for HTTP on {http_bind} open to anyone: turn on ACLs (--acl deny) or client "
            "certificates (--tls-verify-incoming), or say --insecure-http")
