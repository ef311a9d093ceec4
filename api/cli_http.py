"""The HTTP client every `raftkv` command uses to talk to a node (kv, status, members, leader,
snapshot).

An address is `HOST:PORT`, `http://HOST:PORT` or `https://HOST:PORT` (as Consul's
CONSUL_HTTP_ADDR takes it), or a comma-separated list of them: a node that cannot be reached
is skipped for the next one. Only an unreachable node is skipped: an answer, even an error,
is final (a write that reached a node must not be sent twice).

TLS (https:// addresses): the node's certificate is verified against --ca-file (RAFTKV_CACERT
or CONSUL_CACERT; default the system's CAs); --client-cert/--client-key (CONSUL_CLIENT_CERT,
CONSUL_CLIENT_KEY) are presented to a node that requires client certificates. The commands
pass `endpoint(args)` (the addresses with that context) where an address string is taken.

With ACLs on, every call carries a token: --token, else RAFTKV_HTTP_TOKEN, else Consul's
CONSUL_HTTP_TOKEN, sent as X-Consul-Token (never on the command line of a child, never logged).
"""

from __future__ import annotations

import argparse
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from api.tls import TLSError, client_context

DEFAULT_ADDR = "127.0.0.1:8501"
TIMEOUT_S = 10.0


class ClientError(Exception):
    """One line for the user: the cluster refused, or no node could be reached."""


def addr_option() -> argparse.ArgumentParser:
    """A parent parser adding --addr (default: RAFTKV_ADDR, then 127.0.0.1:8501)."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--addr", default=os.environ.get("RAFTKV_ADDR", DEFAULT_ADDR),
                        help="any node's HTTP address: HOST:PORT or http(s)://HOST:PORT, or a comma-separated list")
    parent.add_argument("--token", help="ACL token (default: RAFTKV_HTTP_TOKEN, then CONSUL_HTTP_TOKEN)")
    add_tls_options(parent)
    return parent


def token_headers(token: str | None) -> dict[str, str]:
    """The X-Consul-Token header for `token`, else for the environment's; {} when none."""
    token = token or os.environ.get("RAFTKV_HTTP_TOKEN") or os.environ.get("CONSUL_HTTP_TOKEN")
    return {"X-Consul-Token": token} if token else {}


def add_tls_options(parser: argparse.ArgumentParser) -> None:
    """--ca-file, --client-cert, --client-key, with Consul's environment variables as defaults."""
    env = os.environ.get
    parser.add_argument("--ca-file", default=env("RAFTKV_CACERT") or env("CONSUL_CACERT"), metavar="PEM",
                        help="verify https:// nodes against this CA (default: RAFTKV_CACERT, CONSUL_CACERT, "
                             "else the system's CAs)")
    parser.add_argument("--client-cert", default=env("CONSUL_CLIENT_CERT"), metavar="PEM",
                        help="client certificate for nodes that require one (default: CONSUL_CLIENT_CERT)")
    parser.add_argument("--client-key", default=env("CONSUL_CLIENT_KEY"), metavar="PEM",
                        help="its private key (default: CONSUL_CLIENT_KEY)")


def tls_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The client context for the TLS options; None when none is given (https then verifies
    against the system's CAs). ClientError for an unusable file."""
    if not (args.ca_file or args.client_cert or args.client_key):
        return None
    try:
        return client_context(args.ca_file, args.client_cert, args.client_key)
    except TLSError as exc:
        raise ClientError(str(exc)) from None


@dataclass(frozen=True)
class Endpoint:
    """The nodes to try (`addr`, as --addr takes it) and the TLS context for https:// ones."""

    addr: str
    ssl: ssl.SSLContext | None = None
    client_cert: bool = False  # the context presents a client certificate

    def peer(self, hostport: str) -> Endpoint:
        """Another node, known by its HOST:PORT only: reached with this endpoint's scheme (all
        nodes of a cluster serve the same) and TLS context."""
        scheme = base_urls(self.addr)[0].split("://", 1)[0]
        return Endpoint(f"{scheme}://{hostport}", self.ssl, self.client_cert)


def endpoint(args: argparse.Namespace) -> Endpoint:
    """--addr with the TLS options; ClientError for an unusable file."""
    return Endpoint(args.addr, tls_context(args), bool(args.client_cert))


def base_urls(addr: str) -> list[str]:
    """`http://host:port` for every address in `addr`; ClientError for a malformed one."""
    urls = []
    for one in (a.strip() for a in addr.split(",")):
        if not one:
            continue
        if "://" not in one:
            one = "http://" + one
        parts = urllib.parse.urlsplit(one)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
            raise ClientError(f"bad address {one!r}: expected HOST:PORT or http(s)://HOST:PORT")
        urls.append(f"{parts.scheme}://{parts.netloc}")
    if not urls:
        raise ClientError("no address given")
    return urls


def open_url(addr: str | Endpoint, method: str, path: str, query: dict | None = None, body: bytes | None = None,
             headers: dict | None = None, timeout: float = TIMEOUT_S, token: str | None = None):
    """The response of the first node in `addr` that answers (a file-like object to read and
    close; an HTTP error status is returned too, not raised). ClientError if none answers.
    `token`: the ACL token (None: the environment's, see token_headers)."""
    target = addr if isinstance(addr, Endpoint) else Endpoint(addr)
    headers = {**token_headers(token), **(headers or {})}
    suffix = urllib.parse.quote(path, safe="/:")
    if query:
        suffix += "?" + urllib.parse.urlencode(query)
    failures = []
    for base in base_urls(target.addr):
        req = urllib.request.Request(base + suffix, data=body, method=method, headers=headers or {})
        try:
            return urllib.request.urlopen(req, timeout=timeout, context=target.ssl)
        except urllib.error.HTTPError as exc:
            return exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            cause = getattr(exc, "reason", exc)
            reason = _reason(cause)
            hung_up = isinstance(cause, (ConnectionResetError, BrokenPipeError))  # not refused: it was listening
            if hung_up and base.startswith("https:") and not target.client_cert:
                # A node that requires a client certificate hangs up on a client without one
                # (asyncio's TLS sends no alert), which looks like any other hang-up.
                reason += " (does the node require a client certificate? --client-cert, --client-key)"
            failures.append(f"{base.split('://', 1)[1]}: {reason}")
    raise ClientError("cannot reach " + "; ".join(failures))


def _reason(exc) -> str:
    """The why of a failed call; TLS failures say so, in OpenSSL's words without its source line."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS: the node's certificate is not trusted ({exc.verify_message})"
    if isinstance(exc, ssl.SSLError):
        if exc.reason and "CERTIFICATE_REQUIRED" in exc.reason:
            return "TLS: the node requires a client certificate (--client-cert, --client-key)"
        return "TLS: " + str(exc.reason or exc).replace("_", " ").lower()
    return str(exc)


def request(addr: str | Endpoint, method: str, path: str, query: dict | None = None, body: bytes | None = None,
            headers: dict | None = None, timeout: float = TIMEOUT_S, token: str | None = None):
    """(status, headers, body) of one HTTP call; ClientError when no node in `addr` answers."""
    with open_url(addr, method, path, query, body, headers, timeout, token) as resp:
        return resp.status, resp.headers, resp.read()


def failure(status: int, body: bytes) -> ClientError:
    """The one-line error for a non-2xx answer: its status and the first line of its reason."""
    text = body.decode("utf-8", "replace").strip().splitlines()
    return ClientError(f"HTTP {status}: {text[0] if text else 'no reason given'}")
