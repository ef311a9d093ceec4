"""THROWAWAY (ui-kv branch only): a minimal /ui/ so the KV browser can be tested in a browser
before the console's own serving (api/ui/, with its ETags and its OpenAPI entries) is merged.
The lead drops this module and its one call in api/serve.py at the merge. Wired in serve.py, not
in make_app, so that the OpenAPI document need not list these throwaway routes."""

from __future__ import annotations

import pathlib
import re

from aiohttp import web

_UI_DIR = pathlib.Path(__file__).parent / "ui" / "static"
_UI_CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
           "connect-src 'self'; frame-ancestors 'none'")


def register(app: web.Application) -> None:
    async def ui_file(request: web.Request) -> web.StreamResponse:
        name = request.match_info.get("name") or "index.html"
        path = _UI_DIR / name
        if not re.fullmatch(r"[A-Za-z0-9_-]+\.[a-z]+", name) or not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers={"Content-Security-Policy": _UI_CSP, "Cache-Control": "no-cache"})

    async def ui_root(_request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/ui/")

    app.router.add_get("/ui", ui_root)
    app.router.add_get("/ui/{name:[^/]*}", ui_file)
