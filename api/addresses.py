"""Parsing of HOST:PORT arguments for the command line (one clear error each)."""

from __future__ import annotations

import socket


class AddressError(ValueError):
    pass


def parse_hostport(text: str, what: str, resolve: bool = True) -> str:
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host:
        raise AddressError(f"{what} {text!r} is not HOST:PORT")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise AddressError(f"{what} {text!r} has an invalid port")
    if resolve:
        try:
            socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
        except socket.gaierror:
            raise AddressError(f"{what} {text!r}: cannot resolve host {host!r}") from None
    return f"{host}:{int(port)}"


def parse_peer_list(values: list[str]) -> list[str]:
    peers: list[str] = []
    for value in values:
        for item in value.split(","):
            if item.strip():
                peers.append(parse_hostport(item, "peer"))
    return peers
