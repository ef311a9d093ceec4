"""The console's files: GET /ui/ and /ui/<file> from api/ui/static/ inside the package.

Only the names present in that folder at start-up are served (a fixed table: no path from a
request ever reaches the file system, so no traversal), each with its content type, an ETag
(a hash of the bytes) and `Cache-Control: no-cache` (the browser revalidates: 304 when
unchanged, the new file after an upgrade), and the console's Content-Security-Policy: no
inline script or style, nothing fetched from elsewhere, never framed.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
from dataclasses import dataclass

from aiohttp import web

STATIC_DIR = os.path.join(os.path.dirname(__file__), "static")
CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
       "connect-src 'self'; frame-ancestors 'none'")
_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".svg": "image/svg+xml",
          ".png": "image/png", ".ico": "image/x-icon", ".txt": "text/plain"}


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    content_type: str
    etag: str


def load(folder: str = STATIC_DIR) -> dict[str, StaticFile]:
    files = {}
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        path = os.path.join(folder, name)
        if not os.path.isfile(path) or name.startswith("."):
            continue
        with open(path, "rb") as f:
            body = f.read()
        ext = os.path.splitext(name)[1]
        ctype = _TYPES.get(ext) or mimetypes.guess_type(name)[0] or "application/octet-stream"
        files[name] = StaticFile(body, ctype, '"' + hashlib.sha256(body).hexdigest()[:20] + '"')
    return files


def headers_for(f: StaticFile) -> dict[str, str]:
    return {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "ETag": f.etag,
            "Cache-Control": "no-cache", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}


def register(app: web.Application) -> None:
    files = load()

    async def serve(request: web.Request) -> web.Response:
        name = request.match_info.get("name") or "index.html"
        f = files.get(name)
        if f is None:
            raise web.HTTPNotFound(text=f"no such console file: {name}\n")
        headers = headers_for(f)
        if f.etag in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=headers)
        charset = "utf-8" if f.content_type.startswith("text/") or f.content_type.endswith("+xml") else None
        return web.Response(body=f.body, content_type=f.content_type, charset=charset, headers=headers)

    async def to_console(_request: web.Request) -> web.Response:
        raise web.HTTPFound("/ui/")

    app.router.add_get("/", to_console)
    app.router.add_get("/ui", to_console)
    app.router.add_get("/ui/", serve)
    app.router.add_get("/ui/{name}", serve)
