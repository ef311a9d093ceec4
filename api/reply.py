"""A response as plain data, so one service function answers both HTTP fronts (aiohttp and
the lean path in api.fast_http)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = "application/json"  # None: no body, no Content-Type

    @classmethod
    def json(cls, doc, headers: dict[str, str] | None = None, status: int = 200) -> Reply:
        return cls(status, json.dumps(doc).encode(), headers or {})

    @classmethod
    def text(cls, status: int, reason: str, headers: dict[str, str] | None = None) -> Reply:
        return cls(status, (reason + "\n").encode(), headers or {}, "text/plain; charset=utf-8")

    def to_web(self) -> web.Response:
        if self.content_type is None:
            return web.Response(status=self.status, body=self.body or None, headers=self.headers)
        content_type, _, charset = self.content_type.partition("; charset=")
        return web.Response(status=self.status, body=self.body, headers=self.headers,
                            content_type=content_type, charset=charset or None)
