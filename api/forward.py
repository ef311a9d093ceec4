"""Forwarding to the leader: the one seam where a request leaves this node.

A request that must be served by the leader (writes, default and consistent reads) is
served here if this node leads, else sent once to the leader's advertised HTTP address.
The hop is marked with `X-Raftkv-Forwarded`; a node that receives a marked request and is
not the leader answers 503 instead of forwarding again (loop guard). With TLS on, the hop is
HTTPS and verifies the leader's certificate (api/tls.py: all nodes share one scheme).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp

from api.errors import HTTPProblem, unavailable
from api.http_client import client_session
from api.reply import Reply

FORWARDED_HEADER = "X-Raftkv-Forwarded"
_COPIED_HEADERS = ("Content-Type", "Retry-After", "X-Content-Type-Options", "Content-Security-Policy")


@dataclass(frozen=True)
class ForwardRequest:
    """What forwarding needs of a request, from either HTTP front: no raw request goes further."""

    method: str
    rel_url: str  # path and query, as received
    headers: Mapping[str, str]  # case-insensitive

    @classmethod
    def of(cls, request) -> ForwardRequest:
        """From aiohttp's request or the lean front's (both have method, rel_url, headers)."""
        return cls(request.method, str(request.rel_url), request.headers)


class LeaderForwarder:
    def __init__(self, node, timeout_s: float, peer_ssl: ssl.SSLContext | None = None) -> None:
        """`node`: the api.node_port.Node this API serves; `peer_ssl`: HTTPS to the leader."""
        self.node = node
        self.timeout_s = timeout_s
        self.peer_ssl = peer_ssl
        self._session: aiohttp.ClientSession | None = None
        self.forwarded = 0
        self.forward_failures = 0

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def route(self, request: ForwardRequest, body: bytes | None, is_write: bool,
                    hold_s: float = 0.0) -> Reply | None:
        """None when this node is the leader and serves the request itself, else the
        leader's response to the forwarded request."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            await self.node.wait_for_leader(max(0.0, deadline - time.monotonic()))
            if self.node.is_leader:
                return None
            if FORWARDED_HEADER in request.headers:
                origin = request.headers[FORWARDED_HEADER]
                raise unavailable(f"not the leader (this request was already forwarded by {origin})")
            target = self.node.leader_http()
            if target is not None:
                if is_write:
                    return await self._send(request, target, body, is_write, hold_s)
                reply = await self._read_unless_leader_changes(request, target, hold_s)
                if reply is not None:
                    return reply
                continue
            left = deadline - time.monotonic()
            if left <= 0:  # a fresh leader publishes its address within a second
                raise unavailable("the leader has not published its HTTP address yet")
            await self.node.wait_for_cluster_change(left)

    async def _read_unless_leader_changes(self, request, target: str, hold_s: float) -> Reply | None:
        """The leader's answer, or None if this node learns of another leader first: a read
        sent to a leader that was then cut off would otherwise hang until its timeout, long
        after the cluster had moved on. (A read can be abandoned; a write could not be.)"""
        task = asyncio.ensure_future(self._send(request, target, None, False, hold_s))
        try:
            while True:
                change = asyncio.ensure_future(self.node.wait_for_cluster_change(self.timeout_s + hold_s + 1))
                try:
                    await asyncio.wait({task, change}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    change.cancel()
                if task.done():
                    return task.result()
                if self.node.leader_http() not in (target, None):
                    return None
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    async def send(self, request: ForwardRequest, target: str, body: bytes | None, is_write: bool) -> Reply:
        """Send the request to `target` whether or not it was forwarded before (operator calls
        that hand leadership over and then need the new leader)."""
        return await self._send(request, target, body, is_write, 0.0)

    async def _send(self, request: ForwardRequest, target: str, body: bytes | None, is_write: bool,
                    hold_s: float) -> Reply:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=0, ssl=self.peer_ssl or True)  # True: aiohttp's default
            self._session = client_session(auto_decompress=False, connector=connector)
        headers = {k: v for k, v in request.headers.items()
                   if k.lower().startswith("x-consul") or k.lower() in ("content-type", "authorization")}
        headers[FORWARDED_HEADER] = self.node.node_id
        url = f"{'https' if self.peer_ssl else 'http'}://{target}{request.rel_url}"
        try:
            timeout = aiohttp.ClientTimeout(total=self.timeout_s + hold_s + 1)
            async with self._session.request(request.method, url, data=body, headers=headers, timeout=timeout) as resp:
                payload = await resp.read()
                out_headers = {k: v for k, v in resp.headers.items()  # X-Raftkv-: a restore's key count
                               if k.startswith(("X-Consul-", "X-Raftkv-")) or k in _COPIED_HEADERS}
                content_type = out_headers.pop("Content-Type", None)
                self.forwarded += 1
                return Reply(resp.status, payload, out_headers, content_type)
        except (aiohttp.ClientConnectorCertificateError, aiohttp.ClientConnectorSSLError) as exc:
            self.forward_failures += 1  # a misconfigured cluster: say so rather than "unreachable"
            raise unavailable(f"TLS with the leader {target} failed ({exc}); nothing was applied") from None
        except aiohttp.ClientConnectorError:
            self.forward_failures += 1
            raise unavailable(f"leader {target} is unreachable; nothing was applied") from None
        except (TimeoutError, aiohttp.ClientError) as exc:
            self.forward_failures += 1
            if is_write:
                raise HTTPProblem(
                    503, f"outcome unknown: the leader {target} did not answer ({type(exc).__name__})",
                    {"Retry-After": "1"},
                ) from None
            raise unavailable(f"the leader {target} did not answer ({type(exc).__name__})") from None
