"""A lean HTTP/1.1 front for the hot /v1/kv requests; aiohttp serves everything else.

Every connection starts here. A request that is plain and hot (HTTP/1.1, Content-Length
framing, no Expect, a /v1/kv/<key> PUT, DELETE or simple GET) is parsed with a few bytes
operations and answered by the same service functions aiohttp's handlers use, with the
response written as one prepared byte string. The first request that is anything else
hands the connection, with its unread bytes, to aiohttp's own protocol for good, so
validation, blocking queries, transactions, snapshots and malformed input keep aiohttp's
complete HTTP handling. Why: aiohttp's per-request machinery (request and response objects,
router, middleware, header serialisation) was half of a node's CPU under load (BENCHMARKS.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from urllib.parse import parse_qsl, unquote

from multidict import CIMultiDict

from api import kv
from api.acl.authz import DEFAULT_POLICY_HEADER
from api.context import ApiContext
from api.errors import problem_for
from api.params import parse_key, read_params
from api.reply import Reply

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 8192
KEEPALIVE_S = 75.0  # aiohttp's keepalive_timeout
_REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 409: "Conflict",
            413: "Payload Too Large", 500: "Internal Server Error", 503: "Service Unavailable"}
# GET parameters the lean path serves; any other (index, recurse, keys, ...) goes to aiohttp.
_LEAN_GET_PARAMS = frozenset({"raw", "stale", "consistent", "max_stale", "dc"})
_LEAN_PUT_PARAMS = frozenset({"flags", "cas", "dc"})
_LEAN_DELETE_PARAMS = frozenset({"cas", "dc"})
_LEAN = {"GET": _LEAN_GET_PARAMS, "PUT": _LEAN_PUT_PARAMS, "DELETE": _LEAN_DELETE_PARAMS}


class LeanRequest:
    """What the service functions and the leader forwarder read of a request."""

    __slots__ = ("method", "rel_url", "key", "query", "headers", "body")

    def __init__(self, method: str, rel_url: str, key: str, query: dict, headers: CIMultiDict, body: bytes) -> None:
        self.method, self.rel_url, self.key, self.query = method, rel_url, key, query
        self.headers, self.body = headers, body


def encode_reply(reply: Reply, keep_alive: bool) -> bytes:
    lines = [f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, 'Unknown')}", f"Content-Length: {len(reply.body)}"]
    if reply.content_type is not None:
        lines.append(f"Content-Type: {reply.content_type}")
    lines.extend(f"{k}: {v}" for k, v in reply.headers.items())
    if not keep_alive:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + reply.body


class LeanProtocol(asyncio.Protocol):
    def __init__(self, ctx: ApiContext, fallback_factory) -> None:
        self.ctx = ctx
        self.fallback_factory = fallback_factory  # aiohttp's web.Server: builds its RequestHandler
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.busy = False  # a request is being served: later ones wait (responses stay in order)
        self.paused = False
        self.last_active = 0.0
        self.idle_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.last_active = time.monotonic()
        self.idle_timer = asyncio.get_running_loop().call_later(KEEPALIVE_S, self._close_if_idle)

    def connection_lost(self, exc) -> None:
        self.transport = None
        if self.idle_timer is not None:
            self.idle_timer.cancel()

    def _close_if_idle(self) -> None:
        """Close a kept-alive connection idle for KEEPALIVE_S, as aiohttp would (one timer per
        connection, re-armed for the time left instead of on every request)."""
        if self.transport is None:
            return
        left = self.last_active + KEEPALIVE_S - time.monotonic()
        if left <= 0 and not self.busy:
            self.transport.close()
            self.transport = None
            return
        self.idle_timer = asyncio.get_running_loop().call_later(max(left, 1.0), self._close_if_idle)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self.last_active = time.monotonic()
        if not self.busy:
            self._next()
        elif len(self.buf) > self.ctx.config.max_value_bytes + 2 * MAX_HEAD_BYTES and not self.paused:
            self.paused = True  # a client pipelining faster than we answer: stop reading for now
            if self.transport is not None:
                self.transport.pause_reading()

    def _next(self) -> None:
        while self.transport is not None and not self.busy and self.buf:
            request = self._parse()
            if request is None:
                return
            self.busy = True
            asyncio.get_running_loop().create_task(self._serve(request))

    def _parse(self) -> LeanRequest | None:
        """The next complete lean request, consumed from the buffer; None to wait for more
        bytes, or (after handing the connection to aiohttp) when the request is not lean."""
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buf) > MAX_HEAD_BYTES:
                self._hand_off()
            return None
        head = bytes(self.buf[:end])
        if not head.isascii():  # raw non-ASCII bytes: aiohttp's parser refuses them with a 400
            return self._hand_off()
        lines = head.decode("ascii").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or parts[2] != "HTTP/1.1" or parts[0] not in _LEAN or not parts[1].startswith("/v1/kv/"):
            return self._hand_off()
        method, target = parts[0], parts[1]
        headers: CIMultiDict[str] = CIMultiDict()
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                return self._hand_off()
            headers.add(name.strip(), value.strip())
        if "transfer-encoding" in headers or "expect" in headers:
            return self._hand_off()
        length_text = headers.get("content-length", "0")
        if not length_text.isdigit() or int(length_text) > self.ctx.config.max_value_bytes:
            return self._hand_off()  # aiohttp answers the 400 or 413
        length = int(length_text)
        if len(self.buf) < end + 4 + length:
            return None
        path, _, query_text = target.partition("?")
        query: dict[str, str] = {}
        for name, value in parse_qsl(query_text, keep_blank_values=True):
            query.setdefault(name, value)  # the first of a repeated parameter, as aiohttp's query.get
        if not query.keys() <= _LEAN[method] or "%" in path or "/." in path:
            return self._hand_off()  # unusual keys keep aiohttp's exact URL decoding
        body = bytes(self.buf[end + 4:end + 4 + length])
        del self.buf[:end + 4 + length]
        return LeanRequest(method, target, unquote(path[len("/v1/kv/"):]), query, headers, body)

    def _hand_off(self) -> LeanRequest | None:
        """From now on this connection is aiohttp's, starting with the unread bytes. Always
        None: `_parse` answers "no lean request" with `return self._hand_off()`."""
        protocol = self.fallback_factory()
        transport, self.transport = self.transport, None
        assert transport is not None  # _next parses only while the connection is ours
        if self.idle_timer is not None:
            self.idle_timer.cancel()  # aiohttp keeps its own keep-alive timeout
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if self.buf:
            protocol.data_received(bytes(self.buf))
        self.buf.clear()
        return None

    async def _serve(self, request: LeanRequest) -> None:
        try:
            reply = await self._dispatch(request)
        except Exception as exc:  # the same translation aiohttp's error middleware applies
            problem = problem_for(exc)
            if problem is None:
                # the path only: a query may carry ?token=, which must never reach a log
                log.exception("unhandled error serving %s %s", request.method, request.rel_url.partition("?")[0])
                problem = Reply.text(500, "internal error (see the node's log)")
            reply = problem
        reply.headers.setdefault(DEFAULT_POLICY_HEADER, self.ctx.acl.header_value)  # as aiohttp's answers
        keep_alive = request.headers.get("connection", "").lower() != "close"
        if self.transport is not None:
            self.transport.write(encode_reply(reply, keep_alive))
            if not keep_alive:
                self.transport.close()
                self.transport = None
        self.busy = False
        self.last_active = time.monotonic()
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        self._next()

    async def _dispatch(self, request: LeanRequest) -> Reply:
        ctx, query = self.ctx, request.query
        if request.method == "PUT":
            return await kv.write_value(ctx, parse_key(request.key, allow_empty=False), query, request.body,
                                        request.headers)
        if request.method == "DELETE":
            return await kv.delete_value(ctx, parse_key(request.key, allow_empty=False), query, request.headers)
        return await kv.read_value(ctx, request, parse_key(request.key, allow_empty=False), read_params(query))

