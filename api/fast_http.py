"""A lean HTTP/1.1 front for the hot /v1/kv requests; aiohttp serves everything else.

Every connection starts here. A request that is plain and hot (HTTP/1.1, Content-Length
framing, no Expect, a /v1/kv/<key> PUT, DELETE or simple GET) is parsed with a few bytes
operations and answered by the same service functions aiohttp's handlers use, with the
response written as one prepared byte string. The first request that is anything else
hands the connection, with its unread bytes, to aiohttp's own protocol for good, so
validation, blocking queries, transactions, snapshots and malformed input keep aiohttp's
complete HTTP handling. Why: aiohttp's per-request machinery (request and response objects,
router, middleware, header serialisation) was half of a node's CPU under load (BENCHMARKS.md).

The lean parser never interprets a byte stream differently from aiohttp (request smuggling):
anything it is not sure to read exactly as aiohttp does (obs-fold, bare CR or LF, control
bytes, a header name that is not a token, Transfer-Encoding, a repeated or non-decimal
Content-Length, a fragment, ...) goes to aiohttp, which answers it or refuses it. With
`lean=False` (`--http-front aiohttp`) every connection goes to aiohttp at its first complete
head. Either way this front admits the connection (connections per client), bounds the time
its first request head may take, and answers 414 to a request line too long to be a URL
(api/DESIGN.md, "Limits").
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from collections.abc import Mapping
from types import MappingProxyType
from urllib.parse import parse_qsl, unquote

from multidict import CIMultiDict

from api import kv
from api.acl.authz import DEFAULT_POLICY_HEADER
from api.context import ApiContext
from api.errors import problem_for
from api.head_watch import HeadWatch
from api.limits import TOO_MANY_CONNS_REPLY, url_too_long
from api.logs import log_request, request_logging_on
from api.params import ReadParams, parse_key, read_params
from api.reply import Reply
from api.request_metrics import KV_ROUTE

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 8192  # a longer head goes to aiohttp (its limits: 8190 bytes a line, 128 headers)
MAX_LEAN_HEADERS = 64
KEEPALIVE_S = 75.0  # aiohttp's keepalive_timeout
_REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 408: "Request Timeout",
            409: "Conflict", 413: "Payload Too Large", 414: "URI Too Long", 429: "Too Many Requests",
            500: "Internal Server Error", 503: "Service Unavailable"}
# A lean request line (no fragment: aiohttp drops it from the path), then headers named by a token
# (RFC 9110 tchar) with printable ASCII values, each line ended by CRLF.
_LEAN_REQUEST_LINE = re.compile(rb"(GET|PUT|DELETE) (/v1/kv/[!\x22\x24-\x7e]*) HTTP/1\.1")
_PLAIN_HEADERS = re.compile(rb"(?:\r\n[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t\x20-\x7e]*)*")
# GET parameters the lean path serves; any other (index, recurse, keys, ...) goes to aiohttp.
_LEAN_GET_PARAMS = frozenset({"raw", "stale", "consistent", "max_stale", "dc"})
_LEAN_PUT_PARAMS = frozenset({"flags", "cas", "dc"})
_LEAN_DELETE_PARAMS = frozenset({"cas", "dc"})
_LEAN = {"GET": _LEAN_GET_PARAMS, "PUT": _LEAN_PUT_PARAMS, "DELETE": _LEAN_DELETE_PARAMS}


# Parsed query strings and a GET's parameters, shared read-only by their requests: clients repeat
# the same few (`?consistent`, `?stale`, ...), and parse_qsl and read_params were a measurable share
# of a read's CPU. A bad parameter raises, and lru_cache keeps no exception: it raises each time.
@functools.lru_cache(maxsize=256)
def _query_of(text: str) -> Mapping[str, str]:
    parsed: dict[str, str] = {}
    for name, value in parse_qsl(text, keep_blank_values=True):
        parsed.setdefault(name, value)  # the first of a repeated parameter, as aiohttp's query.get
    return MappingProxyType(parsed)


@functools.lru_cache(maxsize=256)
def _read_params_of(text: str) -> ReadParams:
    return read_params(_query_of(text))


class LeanRequest:
    """What the service functions and the leader forwarder read of a request."""

    __slots__ = ("method", "rel_url", "key", "query", "headers", "body")

    def __init__(self, method: str, rel_url: str, key: str, query: Mapping[str, str], headers: CIMultiDict,
                 body: bytes) -> None:
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
    def __init__(self, ctx: ApiContext, fallback_factory, lean: bool = True) -> None:
        self.ctx = ctx
        self.fallback_factory = fallback_factory  # aiohttp's web.Server: builds its RequestHandler
        self.lean = lean  # False: hand every connection to aiohttp at its first complete head
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.busy = False  # a request is being served: later ones wait (responses stay in order)
        self.paused = False
        self.last_active = 0.0
        self.idle_timer: asyncio.TimerHandle | None = None
        self.awaiting: str | None = None  # "head" or "body" while a request is arriving, against read_timer
        self.read_timer: asyncio.TimerHandle | None = None
        self.served = (0, 0)  # requests and bytes read by the lean parser (where a hand-off happened)

    def connection_made(self, transport) -> None:
        if not self.ctx.connections.admit(transport):
            transport.write(TOO_MANY_CONNS_REPLY)  # as Consul answers, then it closes
            transport.close()
            return
        self.transport = transport
        self.last_active = time.monotonic()
        self.idle_timer = asyncio.get_running_loop().call_later(KEEPALIVE_S, self._close_if_idle)
        self._await("head")  # a new connection has its head timeout to send a request, not the keep-alive

    def connection_lost(self, exc) -> None:
        self.transport = None
        self._await(None)
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

    def _await(self, part: str | None) -> None:
        """Start the clock for the part of a request now awaited ("head" from its first byte or
        from the connect, "body" from the end of its head), or stop it (None)."""
        if part == self.awaiting:
            return
        if self.read_timer is not None:
            self.read_timer.cancel()
            self.read_timer = None
        self.awaiting = part
        if part is not None:
            config = self.ctx.config
            limit_s = config.head_timeout_s if part == "head" else config.body_timeout_s
            self.read_timer = asyncio.get_running_loop().call_later(limit_s, self._read_timed_out, part, limit_s)

    def _read_timed_out(self, part: str, limit_s: float) -> None:
        """A client too slow to send its request (or sending nothing) holds the connection no longer."""
        self.read_timer = None
        if self.transport is not None and not self.busy and self.awaiting == part:
            self._refuse(Reply.text(408, f"request {part} not received within {limit_s:g} s"))

    def _refuse(self, reply: Reply) -> None:
        """Answer `reply` and close: what is left of the stream cannot be trusted as requests."""
        assert self.transport is not None
        self.transport.write(encode_reply(reply, keep_alive=False))
        self.transport.close()
        self.transport = None
        self.buf.clear()
        self._await(None)

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
            self._await(None)
            self.busy = True
            asyncio.get_running_loop().create_task(self._serve(request))

    def _parse(self) -> LeanRequest | None:
        """The next complete lean request, consumed from the buffer; None to wait for more
        bytes, or (after handing the connection to aiohttp or refusing it) when there is none."""
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            self._await("head")
            if len(self.buf) > self.ctx.config.max_url_bytes + 32 and b"\n" not in self.buf:
                too_long = url_too_long(len(self.buf), self.ctx.config.max_url_bytes)
                self._refuse(Reply.text(too_long.status, too_long.reason))
            elif len(self.buf) > MAX_HEAD_BYTES:
                self._hand_off()
            return None
        if not self.lean or end > MAX_HEAD_BYTES:
            return self._hand_off()
        head = bytes(self.buf[:end])
        line_end = head.find(b"\r\n")
        line_end = end if line_end < 0 else line_end
        # Anything but printable ASCII in plain CRLF lines of token-named headers (obs-fold, a bare
        # CR or LF, control bytes, "Name :", raw UTF-8, ...), or a request that is not lean: aiohttp's.
        request_line = _LEAN_REQUEST_LINE.fullmatch(head, 0, line_end)
        if request_line is None or not _PLAIN_HEADERS.fullmatch(head, line_end) \
                or head.count(b"\r\n") >= MAX_LEAN_HEADERS:
            return self._hand_off()
        method, target = request_line.group(1).decode("ascii"), request_line.group(2).decode("ascii")
        if len(target) > self.ctx.config.max_url_bytes:
            return self._hand_off()
        headers: CIMultiDict[str] = CIMultiDict()
        for line in head[line_end + 2:].decode("ascii").split("\r\n") if line_end < end else ():
            name, _, value = line.partition(":")
            headers.add(name, value.strip(" \t"))
        if "transfer-encoding" in headers or "expect" in headers or "upgrade" in headers \
                or len(headers.getall("host", ())) != 1:
            return self._hand_off()  # aiohttp refuses an HTTP/1.1 request without a Host
        lengths = headers.getall("content-length", ["0"])
        if len(lengths) != 1 or not lengths[0].isdigit() or int(lengths[0]) > self.ctx.config.max_value_bytes:
            return self._hand_off()  # aiohttp answers the 400 or 413
        length = int(lengths[0])
        if len(self.buf) < end + 4 + length:
            self._await("body")
            return None
        path, _, query_text = target.partition("?")
        query = _query_of(query_text)
        if not query.keys() <= _LEAN[method] or "%" in path or "/." in path or "//" in path:
            return self._hand_off()  # unusual keys keep aiohttp's exact URL decoding; unclean paths its 301
        body = bytes(self.buf[end + 4:end + 4 + length])
        del self.buf[:end + 4 + length]
        self.served = (self.served[0] + 1, self.served[1] + end + 4 + length)
        return LeanRequest(method, target, unquote(path[len("/v1/kv/"):]), query, headers, body)

    def _hand_off(self) -> LeanRequest | None:
        """From now on this connection is aiohttp's, starting with the unread bytes. Always
        None: `_parse` answers "no lean request" with `return self._hand_off()`."""
        protocol = HeadWatch(self.fallback_factory(), self.ctx.config.head_timeout_s, self.ctx.head_watches)
        transport, self.transport = self.transport, None
        assert transport is not None  # _next parses only while the connection is ours
        self._await(None)  # HeadWatch and aiohttp bound the rest (api/DESIGN.md, "Limits")
        if self.idle_timer is not None:
            self.idle_timer.cancel()  # aiohttp keeps its own keep-alive timeout
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if self.buf:
            protocol.data_received(bytes(self.buf))
        self.buf.clear()
        return None

    async def _serve(self, request: LeanRequest) -> None:
        started = time.perf_counter()
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
        self.ctx.requests.observe(KV_ROUTE, request.method, reply.status, request.query, time.perf_counter() - started)
        keep_alive = request.headers.get("connection", "").lower() != "close"
        if request_logging_on():
            peer = self.transport.get_extra_info("peername") if self.transport is not None else None
            log_request(request.method, request.rel_url.partition("?")[0], reply.status,
                        time.perf_counter() - started, peer[0] if peer else None)
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
        return await kv.read_value(ctx, request, parse_key(request.key, allow_empty=False),
                                   _read_params_of(request.rel_url.partition("?")[2]))

