"""TLS for HTTP: `raftkv serve`'s certificate options and the SSL contexts built from them,
and the client context the commands use (api/cli_http.py).

One setting per cluster: every node serves HTTPS or none does. A peer's HTTP address is
published scheme-less (HOST:PORT, in the membership), so a node reaches its peers with its
own scheme: https when it serves TLS itself.

Served: TLS 1.2 or newer with the node's certificate; with verify_incoming every client must
present a certificate signed by the CA (Consul's `verify_incoming`). Sent (forwarding to the
leader, --join, membership checks): the peer's certificate is verified against the CA and must
name the host of the peer's HTTP address, and the node presents its own certificate, which a
peer with verify_incoming requires. A node certificate therefore serves both ends: extended
key usage serverAuth and clientAuth, as `consul tls cert create -server` makes them.

Every problem with the files is a TLSError of one line naming the option, found at start-up.
"""

from __future__ import annotations

import argparse
import ssl
from dataclasses import dataclass

MIN_VERSION = ssl.TLSVersion.TLSv1_2  # Consul's default tls_min_version


class TLSError(Exception):
    """A certificate, key or CA file that cannot be used; one line for the user."""


@dataclass(frozen=True)
class Options:
    """The option names the files came from, for the one-line errors."""

    ca: str
    cert: str
    key: str


SERVE_OPTIONS = Options("--tls-ca-file", "--tls-cert-file", "--tls-key-file")
CLI_OPTIONS = Options("--ca-file", "--client-cert", "--client-key")


@dataclass(frozen=True)
class NodeTLS:
    """A node's two contexts: what it serves, and what it uses towards other nodes."""

    server: ssl.SSLContext
    peer: ssl.SSLContext


def add_serve_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tls-cert-file", metavar="PEM",
                        help="serve HTTPS with this certificate (and --tls-key-file); every node of a cluster must")
    parser.add_argument("--tls-key-file", metavar="PEM", help="the certificate's private key")
    parser.add_argument("--tls-ca-file", metavar="PEM",
                        help="CA that signs the nodes' (and clients') certificates; default: the system's")
    parser.add_argument("--tls-verify-incoming", action="store_true",
                        help="require a client certificate signed by --tls-ca-file on every HTTPS connection")


def node_tls_from_args(args: argparse.Namespace) -> NodeTLS | None:
    """None when TLS is off; TLSError for any inconsistent option or unusable file."""
    cert, key, ca, verify_incoming = args.tls_cert_file, args.tls_key_file, args.tls_ca_file, args.tls_verify_incoming
    if not cert and not key:
        if ca or verify_incoming:
            raise TLSError("--tls-ca-file and --tls-verify-incoming need --tls-cert-file and --tls-key-file")
        return None
    if not (cert and key):
        raise TLSError("--tls-cert-file and --tls-key-file go together")
    if verify_incoming and not ca:
        raise TLSError("--tls-verify-incoming needs --tls-ca-file (the CA that signs client certificates)")
    return NodeTLS(server_context(cert, key, ca, verify_incoming), client_context(ca, cert, key, SERVE_OPTIONS))


def server_context(cert_file: str, key_file: str, ca_file: str | None, verify_incoming: bool) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = MIN_VERSION
    _load_chain(ctx, cert_file, key_file, SERVE_OPTIONS)
    if ca_file:
        _load_ca(ctx, ca_file, SERVE_OPTIONS)
    if verify_incoming:
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_context(ca_file: str | None, cert_file: str | None = None, key_file: str | None = None,
                   options: Options = CLI_OPTIONS) -> ssl.SSLContext:
    """Verifies the server against `ca_file` (default: the system's CAs) and its host name;
    presents `cert_file` when given (for a server with verify_incoming)."""
    if bool(cert_file) != bool(key_file):
        raise TLSError(f"{options.cert} and {options.key} go together")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the certificate and the host name
    ctx.minimum_version = MIN_VERSION
    if ca_file:
        _load_ca(ctx, ca_file, options)
    else:
        ctx.load_default_certs()
    if cert_file and key_file:
        _load_chain(ctx, cert_file, key_file, options)
    return ctx


def _readable_pem(path: str, option: str) -> None:
    """A clear line for the common mistakes, before OpenSSL's terser ones."""
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 20)
    except OSError as exc:
        raise TLSError(f"{option} {path}: {exc.strerror}") from None
    if b"-----BEGIN " not in head:
        raise TLSError(f"{option} {path}: not a PEM file")


def _load_chain(ctx: ssl.SSLContext, cert_file: str, key_file: str, options: Options) -> None:
    _readable_pem(cert_file, options.cert)
    _readable_pem(key_file, options.key)
    try:
        ctx.load_cert_chain(cert_file, key_file)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise TLSError(f"{options.key} {key_file} is not the key of {options.cert} {cert_file}") from None
        raise TLSError(f"{options.cert} {cert_file} / {options.key} {key_file}: "
                       f"not a certificate and its private key ({exc.reason or exc})") from None


def _load_ca(ctx: ssl.SSLContext, ca_file: str, options: Options) -> None:
    _readable_pem(ca_file, options.ca)
    try:
        ctx.load_verify_locations(cafile=ca_file)
    except ssl.SSLError as exc:
        raise TLSError(f"{options.ca} {ca_file}: no usable CA certificate in it ({exc.reason or exc})") from None
