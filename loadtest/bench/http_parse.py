"""The lean front's request parser against httptools (llhttp, the parser under aiohttp's own C
extension): CPU time per request, in one process, no sockets.

    python -m loadtest.bench.http_parse [--requests 50000] [--out FILE]

Three request shapes: wrk's PUT and stale GET (loadtest/bench/wrk_kv.lua) and a PUT with the
headers an HTTP library sends (py-consul over requests). For each, the best of 5 repeats of:

- `lean`: `LeanProtocol._parse` as a node runs it (api/fast_http.py): every check that decides
  whether a request is lean, the request built, the buffer consumed;
- `httptools, a parser per request`: the same request built from httptools' callbacks;
- `httptools, framed as the lean front needs`: a drop-in for `_parse`. The lean front must know
  where each request ends (it hands a connection's unread bytes to aiohttp at the first request
  that is not lean), so it finds the head's end and the body's length itself and feeds llhttp one
  request at a time; the checks llhttp does not make (method, target, parameters, framing
  headers, one Host) are the lean front's own;
- `httptools, one parser per connection`: a parser kept and fed request after request, as a
  protocol would keep it. This is not a drop-in: llhttp consumes all it is fed and tells no
  offset, so the lean front could no longer hand a connection's unread bytes to aiohttp;
- `httptools bare`: the parser alone, nothing built: a floor for any front on llhttp.

Every variant's request is checked equal to the lean parser's before it is timed.
httptools is in the `load` and `test` extras, not a dependency of a node.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from urllib.parse import parse_qsl, unquote

import httptools
from multidict import CIMultiDict

from api.context import ApiConfig
from api.fast_http import _LEAN as LEAN_PARAMS
from api.fast_http import MAX_HEAD_BYTES, MAX_LEAN_HEADERS, LeanProtocol, LeanRequest

SHAPES = {
    "PUT, as wrk sends it": b"PUT /v1/kv/0000000000001234 HTTP/1.1\r\nHost: 127.0.0.1:8501\r\n"
                            b"Content-Length: 128\r\n\r\n" + b"v" * 128,
    "GET ?stale, as wrk sends it": b"GET /v1/kv/0000000000001234?stale HTTP/1.1\r\nHost: 127.0.0.1:8501\r\n\r\n",
    "PUT, as py-consul sends it": b"PUT /v1/kv/app/config/key?flags=0 HTTP/1.1\r\nHost: 127.0.0.1:8500\r\n"
                                 b"User-Agent: python-requests/2.31.0\r\nAccept-Encoding: gzip, deflate\r\n"
                                 b"Accept: */*\r\nConnection: keep-alive\r\nX-Consul-Token: 5e2c0a1b\r\n"
                                 b"Content-Length: 128\r\n\r\n" + b"v" * 128,
}
KV_PREFIX = "/v1/kv/"
LEAN_TARGET = re.compile(r"/v1/kv/[!\x22\x24-\x7e]*")  # the lean request line's target (api/fast_http.py)


class _Context:
    """What `LeanProtocol._parse` reads of a node's ApiContext."""

    config = ApiConfig()


def lean_parser():
    protocol = LeanProtocol(_Context(), fallback_factory=None)  # type: ignore[arg-type]
    protocol.transport = object()  # an open connection: _parse consumes requests only from one
    protocol._hand_off = lambda: None  # type: ignore[method-assign]  # no aiohttp here: not lean is None

    def parse(data: bytes) -> LeanRequest | None:
        protocol.buf += data
        return protocol._parse()
    return parse


class _Collected:
    __slots__ = ("url", "headers", "body")

    def __init__(self) -> None:
        self.url, self.headers, self.body = b"", [], b""

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("ascii"), value.decode("ascii")))

    def on_body(self, body: bytes) -> None:
        self.body += body


def _request(parser, got: _Collected) -> LeanRequest:
    """The LeanRequest the lean front builds, from what httptools collected."""
    target = got.url.decode("ascii")
    path, _, query_text = target.partition("?")
    query: dict[str, str] = {}
    for name, value in parse_qsl(query_text, keep_blank_values=True):
        query.setdefault(name, value)
    return LeanRequest(parser.get_method().decode("ascii"), target, unquote(path[len(KV_PREFIX):]), query,
                       CIMultiDict(got.headers), got.body)


def httptools_per_request(data: bytes) -> LeanRequest:
    got = _Collected()
    parser = httptools.HttpRequestParser(got)
    parser.feed_data(data)
    return _request(parser, got)


def httptools_framed():
    """`LeanProtocol._parse` on httptools: the same checks and hand-offs (None), llhttp reading
    the head's lines and headers instead of the two regular expressions and the split."""
    protocol = LeanProtocol(_Context(), fallback_factory=None)  # type: ignore[arg-type]
    config, buf = protocol.ctx.config, protocol.buf

    def parse(data: bytes) -> LeanRequest | None:
        buf.extend(data)
        end = buf.find(b"\r\n\r\n")
        if end < 0 or end > MAX_HEAD_BYTES:
            return None
        got = _Collected()
        parser = httptools.HttpRequestParser(got)
        try:
            parser.feed_data(bytes(buf[:end + 4]))
        except httptools.HttpParserError:
            return None
        method = parser.get_method().decode("ascii")
        target = got.url.decode("ascii")
        if method not in LEAN_PARAMS or parser.get_http_version() != "1.1" or not target.startswith(KV_PREFIX) \
                or not LEAN_TARGET.fullmatch(target) or len(target) > config.max_url_bytes \
                or len(got.headers) >= MAX_LEAN_HEADERS:
            return None
        headers = CIMultiDict(got.headers)
        if "transfer-encoding" in headers or "expect" in headers or "upgrade" in headers \
                or len(headers.getall("host", ())) != 1:
            return None
        lengths = headers.getall("content-length", ["0"])
        if len(lengths) != 1 or not lengths[0].isdigit() or int(lengths[0]) > config.max_value_bytes:
            return None
        length = int(lengths[0])
        if len(buf) < end + 4 + length:
            return None
        path, _, query_text = target.partition("?")
        query: dict[str, str] = {}
        for name, value in parse_qsl(query_text, keep_blank_values=True):
            query.setdefault(name, value)
        if not query.keys() <= LEAN_PARAMS[method] or "%" in path or "/." in path or "//" in path:
            return None
        body = bytes(buf[end + 4:end + 4 + length])
        del buf[:end + 4 + length]
        return LeanRequest(method, target, unquote(path[len(KV_PREFIX):]), query, headers, body)
    return parse


def httptools_per_connection(build: bool = True):
    """One parser kept and fed request after request; `build=False`: the parser alone, no request."""
    got = _Collected()
    parser = httptools.HttpRequestParser(got)

    def parse(data: bytes) -> LeanRequest | None:
        got.url, got.headers, got.body = b"", [], b""
        parser.feed_data(data)
        return _request(parser, got) if build else None
    return parse


def same_request(a: LeanRequest | None, b: LeanRequest | None) -> bool:
    if a is None or b is None:
        return False
    return (a.method, a.rel_url, a.key, a.query, list(a.headers.items()), a.body) == \
        (b.method, b.rel_url, b.key, b.query, list(b.headers.items()), b.body)


def per_request_us(parse, data: bytes, requests: int, repeats: int = 5) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        for _ in range(requests):
            parse(data)
        best = min(best, (time.process_time() - started) / requests)
    return round(best * 1e6, 2)


def measure(requests: int) -> dict:
    rows = []
    for shape, data in SHAPES.items():
        reference = lean_parser()(data)
        variants = {"lean": lean_parser(), "httptools, a parser per request": httptools_per_request,
                    "httptools, framed as the lean front needs": httptools_framed(),
                    "httptools, one parser per connection": httptools_per_connection(),
                    "httptools bare": httptools_per_connection(build=False)}
        for name in ("httptools, a parser per request", "httptools, framed as the lean front needs",
                     "httptools, one parser per connection"):
            if not same_request(reference, variants[name](data)):
                raise RuntimeError(f"{name} read {shape!r} differently from the lean parser")
        row = {"shape": shape, "bytes": len(data)}
        row.update({name: per_request_us(parse, data, requests) for name, parse in variants.items()})
        rows.append(row)
    return {"requests_per_repeat": requests, "httptools": httptools.__version__, "rows": rows}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m loadtest.bench.http_parse")
    ap.add_argument("--requests", type=int, default=50_000, help="requests parsed per repeat (5 repeats)")
    ap.add_argument("--out", help="write the figures as JSON here")
    args = ap.parse_args(argv)
    if args.requests < 1:
        print("http_parse: --requests must be at least 1", file=sys.stderr)
        return 2
    doc = measure(args.requests)
    print(f"CPU µs per request, best of 5 x {args.requests:,} (httptools {doc['httptools']}):")
    for row in doc["rows"]:
        print(f"{row['shape']} ({row['bytes']} bytes)")
        for name, us in row.items():
            if name not in ("shape", "bytes"):
                print(f"  {name:45} {us:6.2f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(doc, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
