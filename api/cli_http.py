"""The HTTP client every `raftkv` command uses to talk to a node (kv, status, members, leader,
snapshot).

An address is `HOST:PORT`, `http://HOST:PORT` or `https://HOST:PORT` (as Consul's
CONSUL_HTTP_ADDR takes it), or a comma-separated list of them: a node that cannot be reached
is skipped for the next one. Only an unreachable node is skipped: an answer, even an error,
is final (a write that reached a node must not be sent twice).

With ACLs on, every call carries a token: --token, else RAFTKV_HTTP_TOKEN, else Consul's
CONSUL_HTTP_TOKEN, sent as X-Consul-Token (never on the command line of a child, never logged).
"""

from __future__ import annotations

import argparse
import os
import urllib.error
import urllib.parse
import urllib.request

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
    return parent


def token_headers(token: str | None) -> dict[str, str]:
    """The X-Consul-Token header for `token`, else for the environment's; {} when none."""
    token = token or os.environ.get("RAFTKV_HTTP_TOKEN") or os.environ.get("CONSUL_HTTP_TOKEN")
    return {"X-Consul-Token": token} if token else {}


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


def open_url(addr: str, method: str, path: str, query: dict | None = None, body: bytes | None = None,
             headers: dict | None = None, timeout: float = TIMEOUT_S, token: str | None = None):
    """The response of the first node in `addr` that answers (a file-like object to read and
    close; an HTTP error status is returned too, not raised). ClientError if none answers.
    `token`: the ACL token (None: the environment's, see token_headers)."""
    headers = {**token_headers(token), **(headers or {})}
    suffix = urllib.parse.quote(path, safe="/:")
    if query:
        suffix += "?" + urllib.parse.urlencode(query)
    failures = []
    for base in base_urls(addr):
        req = urllib.request.Request(base + suffix, data=body, method=method, headers=headers or {})
        try:
            return urllib.request.urlopen(req, timeout=timeout)
        except urllib.error.HTTPError as exc:
            return exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            failures.append(f"{base.split('://', 1)[1]}: {getattr(exc, 'reason', exc)}")
    raise ClientError("cannot reach " + "; ".join(failures))


def request(addr: str, method: str, path: str, query: dict | None = None, body: bytes | None = None,
            headers: dict | None = None, timeout: float = TIMEOUT_S, token: str | None = None):
    """(status, headers, body) of one HTTP call; ClientError when no node in `addr` answers."""
    with open_url(addr, method, path, query, body, headers, timeout, token) as resp:
        return resp.status, resp.headers, resp.read()


def failure(status: int, body: bytes) -> ClientError:
    """The one-line error for a non-2xx answer: its status and the first line of its reason."""
    text = body.decode("utf-8", "replace").strip().splitlines()
    return ClientError(f"HTTP {status}: {text[0] if text else 'no reason given'}")
