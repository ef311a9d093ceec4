"""The web console's server side over a fake node (api/ui/): its static files (types, CSP,
ETag, redirects, no traversal), its event stream, the snapshot list and downloads."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from api.ui.events import settled
from api.ui.static_files import CSP, STATIC_DIR
from node.timeline import Timeline
from tests.api.fake_node import FakeNode


async def test_the_console_files_are_served_with_their_types_the_csp_and_an_etag(serve):
    client = await serve(FakeNode())
    r = await client.get("/ui/")
    assert r.status == 200 and r.headers["Content-Type"] == "text/html; charset=utf-8"
    assert r.headers["Content-Security-Policy"] == CSP
    assert '<script type="module" src="app.js">' in await r.text()
    etag = r.headers["ETag"]
    again = await client.get("/ui/", headers={"If-None-Match": etag})
    assert again.status == 304 and again.headers["Content-Security-Policy"] == CSP
    for name, ctype in (("app.js", "text/javascript"), ("style.css", "text/css"), ("http.js", "text/javascript")):
        r = await client.get(f"/ui/{name}")
        assert r.status == 200 and r.headers["Content-Type"].startswith(ctype), name
        assert await r.read() == Path(STATIC_DIR, name).read_bytes()  # noqa: ASYNC240 (a small file)


async def test_root_and_ui_redirect_to_the_console(serve):
    client = await serve(FakeNode())
    for path in ("/", "/ui"):
        r = await client.get(path, allow_redirects=False)
        assert (r.status, r.headers["Location"]) == (302, "/ui/"), path


async def test_no_path_outside_the_static_folder_is_served(serve, tmp_path):
    client = await serve(FakeNode())
    for path in ("/ui/../api/app.py", "/ui/%2e%2e/app.py", "/ui/..%2fapp.py", "/ui/%2e%2e%2f%2e%2e%2fpyproject.toml",
                 "/ui/static_files.py", "/ui/..%5capp.py", "/ui/%2fetc%2fpasswd", "/ui//etc/passwd",
                 "/ui/.%2e/.%2e/README.md", "/ui/nonexistent.js"):
        r = await client.get(path, allow_redirects=True)
        body = await r.read()
        assert r.status == 404, (path, r.status)
        assert b"import" not in body and b"root:" not in body, path


async def test_the_event_stream_sends_the_cluster_and_a_timeline_event(serve):
    node = FakeNode()
    client = await serve(node)
    r = await client.get("/v1/raftkv/ui/events")
    assert r.status == 200 and r.headers["Content-Type"] == "text/event-stream"
    first = await read_events(r, lambda seen: "metrics" in seen)
    assert first["cluster"]["nodes"][0]["state"] == "leader" and first["cluster"]["nodes"][0]["health"] == "ok"
    node.timeline.record("leader", "leader: somebody else", term=2)
    after = await read_events(r, lambda seen: "timeline" in seen)
    assert [e["text"] for e in after["timeline"]] == ["leader: somebody else"]
    r.close()


async def test_a_leader_change_alone_is_pushed_without_waiting_for_the_keepalive(serve):
    node = FakeNode()
    client = await serve(node)
    r = await client.get("/v1/raftkv/ui/events")
    await read_events(r, lambda seen: "metrics" in seen)
    node.follow("127.0.0.1:7009", "127.0.0.1:8509")  # no timeline record: the signature sees it
    after = await asyncio.wait_for(read_events(r, lambda seen: "cluster" in seen), 5)  # keep-alive is 15 s
    assert after["cluster"]["leader"] == "127.0.0.1:7009"
    r.close()


async def test_a_view_without_exactly_one_leader_is_asked_again_within_seconds(serve):
    node = FakeNode()
    node.follow(None, None)  # no member says it leads: a change under way, as after a transfer
    client = await serve(node)
    r = await client.get("/v1/raftkv/ui/events")
    first = await read_events(r, lambda seen: "metrics" in seen)
    assert not settled(first["cluster"])
    # Nothing changes on this node; the view is sent again after CHECK_S, not the 15 s keep-alive.
    again = await asyncio.wait_for(read_events(r, lambda seen: "cluster" in seen), 5)
    assert again["cluster"]["nodes"] == first["cluster"]["nodes"]
    r.close()
    two = {"nodes": [{"state": "leader"}, {"state": "leader"}, {"state": "follower"}]}
    assert not settled(two) and settled({"nodes": two["nodes"][1:]})


def test_the_timeline_ring_is_bounded_and_keeps_the_newest():
    fired = []
    timeline = Timeline(size=5, on_record=lambda: fired.append(1))
    for i in range(12):
        timeline.record("election", f"e{i}")
    events = timeline.since(0)
    assert [e["text"] for e in events] == [f"e{i}" for i in range(7, 12)]
    assert [e["seq"] for e in timeline.since(10)] == [11, 12] and len(fired) == 12


async def test_snapshots_are_listed_and_only_listed_names_download(serve, tmp_path):
    node = FakeNode(snapshot_dir=str(tmp_path))
    node.put("a", b"1")
    path = await node.snapshot_file(1)
    wanted = "snap-00000000000000000001-0000000001.rkvs"
    os.rename(path, tmp_path / wanted)
    (tmp_path.parent / "secret.txt").write_text("nope")
    client = await serve(node)
    r = await client.get("/v1/raftkv/ui/snapshots")
    listed = await r.json()
    assert [(s["name"], s["index"], s["term"]) for s in listed] == [(wanted, 1, 1)]
    r = await client.get(f"/v1/raftkv/ui/snapshots/{wanted}")
    assert r.status == 200 and await r.read() == (tmp_path / wanted).read_bytes()
    assert r.headers["Content-Disposition"] == f'attachment; filename="{wanted}"'
    for bad in ("..%2fsecret.txt", "%2e%2e%2fsecret.txt", "nope.rkvs"):
        r = await client.get(f"/v1/raftkv/ui/snapshots/{bad}")
        assert r.status == 404 and b"nope" != await r.read(), bad


async def read_events(resp, done, timeout_s: float = 10.0) -> dict:
    """Read server-sent events until `done(seen)`; the last document of each event name."""
    seen: dict = {}
    buf = b""

    async def loop():
        nonlocal buf
        while not done(seen):
            buf += await resp.content.readany()
            while b"\n\n" in buf:
                block, buf = buf.split(b"\n\n", 1)
                lines = dict(line.split(": ", 1) for line in block.decode().split("\n") if ": " in line)
                if "event" in lines:
                    seen[lines["event"]] = json.loads(lines["data"])
        return seen

    return await asyncio.wait_for(loop(), timeout_s)


async def test_the_locks_each_session_holds_and_the_timeline_are_served(serve):
    node = FakeNode()
    client = await serve(node)
    sid = (await (await client.put("/v1/session/create", json={"Name": "console"})).json())["ID"]
    assert await (await client.put(f"/v1/kv/locks/a?acquire={sid}", data=b"1")).json() is True
    assert await (await client.put(f"/v1/kv/locks/b?acquire={sid}", data=b"1")).json() is True
    r = await client.get("/v1/raftkv/ui/locks")
    assert r.status == 200 and await r.json() == {sid: ["locks/a", "locks/b"]}
    await client.put(f"/v1/kv/locks/a?release={sid}", data=b"1")
    assert await (await client.get("/v1/raftkv/ui/locks")).json() == {sid: ["locks/b"]}
    node.timeline.record("membership", "voters n1")
    r = await client.get("/v1/raftkv/ui/timeline")
    assert r.status == 200 and [(e["seq"], e["kind"], e["text"]) for e in await r.json()] == [
        (1, "membership", "voters n1")]
