"""Request paths cleaned as Consul's router cleans them.

Consul serves HTTP through Go's net/http ServeMux, which answers a path that is not clean (a
doubled slash, a `.` or `..` segment) with `301 Moved Permanently` to the cleaned path, query
kept. Several Consul clients send `/v1/kv//app/config` for a key given with a leading `/`, and
find the key after following that redirect; raftkv answered them 404 (issue 13).
"""

from __future__ import annotations

import html
import posixpath

from aiohttp import web


def clean(path: str) -> str:
    """Go's path.Clean as ServeMux applies it (net/http cleanPath): one slash for many, no `.`
    or `..` segments, a trailing slash kept."""
    if not path:
        return "/"
    cleaned = posixpath.normpath(path if path.startswith("/") else "/" + path)
    if cleaned.startswith("//"):  # POSIX keeps a leading "//"; Go does not
        cleaned = "/" + cleaned.lstrip("/")
    if path.endswith("/") and cleaned != "/":
        cleaned += "/"
    return cleaned


@web.middleware
async def clean_path_middleware(request: web.Request, handler):
    path, sep, query = request.raw_path.partition("?")
    cleaned = clean(path)
    if cleaned == path:
        return await handler(request)
    location = cleaned + sep + query
    # Go's body for the redirect of a GET; any method gets the 301, as from ServeMux.
    return web.Response(status=301, headers={"Location": location}, content_type="text/html",
                        text=f'<a href="{html.escape(location)}">Moved Permanently</a>.\n\n')
