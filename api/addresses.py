"""Parsing of HOST:PORT arguments for the command line (one clear error each).

HOST is an IP address or a DNS name. An address the node only advertises or dials (--raft
with --raft-bind, --http with --http-bind, --peers, --join) may name a host that does not
resolve yet: in a StatefulSet a pod's name appears when the pod starts, and the Raft
transport looks peers up again at each connect attempt (node.engine.resolver). An address
the node listens on must resolve now (`resolve=True`).
"""

from __future__ import annotations

import ipaddress
import re
import socket

_LABEL = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")


class AddressError(ValueError):
    pass


def valid_host(host: str) -> bool:
    """An IP address, or a DNS name (labels of letters, digits, '-' and '_'; compose service names have '_')."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    name = host[:-1] if host.endswith(".") else host  # a fully qualified name may end with a dot
    return 0 < len(name) <= 253 and all(_LABEL.fullmatch(label) for label in name.split("."))


def resolves(host: str) -> bool:
    try:
        socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return False
    return True


def parse_hostport(text: str, what: str, resolve: bool = True) -> str:
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host:
        raise AddressError(f"{what} {text!r} is not HOST:PORT")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise AddressError(f"{what} {text!r} has an invalid port")
    if not valid_host(host):
        raise AddressError(f"{what} {text!r}: {host!r} is neither an IP address nor a host name")
    if resolve and not resolves(host):
        raise AddressError(f"{what} {text!r}: cannot resolve host {host!r}")
    return f"{host}:{int(port)}"


def parse_peer_list(values: list[str]) -> list[str]:
    """The peers' Raft addresses; their hosts need not resolve yet (`unresolved` names those that do not)."""
    peers: list[str] = []
    for value in values:
        for item in value.split(","):
            if item.strip():
                peers.append(parse_hostport(item, "peer", resolve=False))
    return peers


def unresolved(addresses: list[str]) -> list[str]:
    """Those of `addresses` (parsed HOST:PORT) whose host does not resolve now."""
    return [a for a in addresses if not resolves(a.rpartition(":")[0])]
