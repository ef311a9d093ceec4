"""`raftkv snapshot save | inspect | restore`: checkpoint files from the command line.

save FILE               download a consistent snapshot from a running cluster
inspect FILE            header, index, term, keys, size and the checksum verdict
restore FILE            restore a running cluster to FILE (every node converges to it)
restore FILE --data-dir DIR
                        offline, for disaster recovery (like `etcdutl snapshot restore`):
                        seed a stopped node's empty data folder; do it for every node with
                        the same file, then start them

It lives in api/ because it is a client of the HTTP API (api.cli_http) and of the state
machine's image (node.state_machine); snapshots/ owns only the file format and the folder.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time

from api.cli_http import ClientError, Endpoint, addr_option, endpoint, failure, open_url
from node.state_machine import without_membership
from snapshots import format as fmt
from snapshots.fsutil import fsync_dir
from snapshots.store import DUMP_FILE, SNAPSHOT_DIR, SnapshotStore

CHUNK = 1 << 20
TRANSFER_TIMEOUT_S = 300.0


def register(sub) -> None:
    p = sub.add_parser("snapshot", help="save, inspect and restore snapshots")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    save = verbs.add_parser("save", help="download a consistent snapshot from a running cluster",
                            parents=[addr_option()])
    save.add_argument("file")
    save.add_argument("--stale", action="store_true", help="take the node's newest snapshot, without the leader")
    inspect = verbs.add_parser("inspect", help="show a snapshot's header and verify its checksum")
    inspect.add_argument("file")
    inspect.add_argument("--json", action="store_true")
    restore = verbs.add_parser("restore", help="restore a running cluster, or (--data-dir) a stopped node",
                               parents=[addr_option()])
    restore.add_argument("file")
    restore.add_argument("--data-dir", help="offline: seed this (empty) data folder of a stopped node")
    p.set_defaults(_run=run)


def run(args) -> int:
    try:
        if args.verb == "save":
            return save(args.file, endpoint(args), args.stale, args.token)
        if args.verb == "inspect":
            return inspect(args.file, args.json)
        if args.data_dir:
            return restore_offline(args.file, args.data_dir)
        return restore_online(args.file, endpoint(args), args.token)
    except (ClientError, fmt.SnapshotCorrupt) as exc:
        print(f"raftkv snapshot {args.verb}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"raftkv snapshot {args.verb}: {exc.filename or ''}: {exc.strerror}", file=sys.stderr)
        return 1


class _Progress:
    """One line, rewritten in place on a terminal, for transfers that take a while."""

    def __init__(self, what: str, total: int | None) -> None:
        self.what, self.total, self.done, self.last = what, total, 0, 0.0
        self.tty = sys.stderr.isatty()

    def add(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= 0.5:
            self.last = now
            pct = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
            print(f"{self.what}: {self.done / 1e6:.1f} MB{pct}", end="\r" if self.tty else "\n", file=sys.stderr)


def save(path: str, addr: str | Endpoint, stale: bool, token: str | None = None) -> int:
    tmp = path + ".part"
    query = {"stale": ""} if stale else None
    with _open(addr, "GET", "/v1/snapshot", query, token=token) as resp, open(tmp, "wb") as out:
        progress = _Progress("downloading", int(resp.headers.get("Content-Length") or 0) or None)
        while block := resp.read(CHUNK):
            out.write(block)
            progress.add(len(block))
    try:
        header = fmt.verify(tmp)
    except fmt.SnapshotCorrupt:
        os.unlink(tmp)
        raise
    os.replace(tmp, path)
    print(f"saved {path}: index {header.index}, term {header.term}, {header.key_count} keys, "
          f"{os.path.getsize(path)} bytes, checksum OK")
    return 0


def inspect(path: str, as_json: bool) -> int:
    header = fmt.read_header(path)
    verdict = "OK"
    try:
        fmt.verify(path)
    except fmt.SnapshotCorrupt as exc:
        verdict = f"BAD: {exc}"
    info = {
        "file": path, "format_version": header.format_version, "index": header.index, "term": header.term,
        "keys": header.key_count, "size_bytes": os.path.getsize(path), "payload_bytes": header.payload_bytes,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(header.created_unix)),
        "membership": header.membership, "checksum": verdict,
    }
    if as_json:
        print(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            print(f"{key:>15}: {', '.join(value) if isinstance(value, list) else value}")
    return 0 if verdict == "OK" else 1


def restore_online(path: str, addr: str | Endpoint, token: str | None = None) -> int:
    header = fmt.verify(path)
    with open(path, "rb") as f:
        body = f.read()
    with _open(addr, "PUT", "/v1/snapshot", None, body, {"Content-Type": "application/octet-stream"}, token):
        pass
    where = addr.addr if isinstance(addr, Endpoint) else addr
    print(f"restored the cluster at {where} to {path}: {header.key_count} keys (snapshot index {header.index})")
    return 0


def restore_offline(path: str, data_dir: str) -> int:
    fmt.verify(path)  # the whole file, before anything is touched
    if os.path.exists(os.path.join(data_dir, "raft.journal")) or os.path.exists(os.path.join(data_dir, DUMP_FILE)):
        raise ClientError(f"{data_dir} already holds a node's data; restore into an empty folder")
    store = SnapshotStore(os.path.join(data_dir, SNAPSHOT_DIR))
    header, meta, entries = fmt.read(path)  # verified again on the file it decodes
    if meta.get("voters"):
        # The data comes back, the old cluster's membership does not (node.state_machine).
        final = store.write(dataclasses.replace(header, membership=[]),
                            fmt.Payload(without_membership(meta), entries))
    else:
        entries.close()
        final = store.adopt(path, copy=True, progress=_Progress("copying", os.path.getsize(path)).add)
    fmt.verify(final)
    os.link(final, os.path.join(data_dir, DUMP_FILE))
    fsync_dir(data_dir)
    print(f"seeded {data_dir} with {path}: index {header.index}, {header.key_count} keys. "
          "Do the same for every node, then start them.")
    return 0


def _open(addr: str | Endpoint, method: str, path: str, query=None, body=None, headers=None,
          token: str | None = None):
    """A response to read from; ClientError with the cluster's one-line reason unless 2xx."""
    resp = open_url(addr, method, path, query, body, headers, timeout=TRANSFER_TIMEOUT_S, token=token)
    if resp.status // 100 != 2:
        with resp:
            raise failure(resp.status, resp.read())
    return resp
