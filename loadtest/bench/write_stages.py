"""Where one write's time goes, stage by stage (issue 15): a 3-node cluster, one client.

    python -m loadtest.bench.write_stages [--writes 500] [--raftkv-root DIR]

Starts a 3-node cluster whose nodes run with timestamps patched in around the functions each
stage passes through (`--node`: the patches below, then `raftkv serve`); the node code itself
carries no timestamps. All processes share CLOCK_MONOTONIC (`time.perf_counter_ns`), so the
events of the client and of the three nodes line up on one time axis. One client then writes
`--writes` keys in turn, first to the leader, then to a follower (the write is forwarded to the
leader over Raft), and for each write the gap from one stage to the next is taken; the table
prints the median and p90 of each gap, and how often the stage was seen.

Also times a bare fdatasync of one small appended record in the cluster's folder: the floor.
A measurement, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import threading
import time

TRACE_ENV = "RAFTKV_STAGE_TRACE"  # a folder: each node writes <node>.jsonl there

# -- in the node: the patches ----------------------------------------------------------------

_events: list[tuple] = []


def _mark(event: str, a=None, b=None) -> None:
    _events.append((time.perf_counter_ns(), event, a, b))


def _wrap(cls, name: str, before=None, after=None) -> None:
    original = getattr(cls, name)

    def wrapper(self, *args, **kwargs):
        if before is not None:
            before(self, *args, **kwargs)
        result = original(self, *args, **kwargs)
        if after is not None:
            after(self, result, *args, **kwargs)
        return result

    setattr(cls, name, wrapper)


def install_patches() -> None:
    from pysyncobj.poller import PollPoller

    from api import fast_http
    from node.bridge import LoopBridge
    from node.engine.engine import RaftEngine
    from node.engine.journal import DurableJournal
    from node.engine.transport import DurableTransport
    from node.replica import Replica

    _wrap(fast_http.LeanProtocol, "_parse", after=lambda s, r: r is not None and _mark("http_parsed"))
    encode = fast_http.encode_reply

    def encode_reply(reply, keep_alive):
        _mark("http_reply")
        return encode(reply, keep_alive)

    fast_http.encode_reply = encode_reply
    _wrap(RaftEngine, "submit", before=lambda s, *a: _mark("submit"))
    _wrap(PollPoller, "poll", after=lambda s, r, *a: _mark("poll_returned"))
    _wrap(DurableJournal, "add", after=lambda s, r, cmd, idx, term: _mark("journal_add", idx))
    _wrap(DurableJournal, "sync", before=lambda s: _mark("sync_start", s.last_index),
          after=lambda s, r: _mark("sync_end", s.synced_index))
    _wrap(DurableJournal, "setRaftCommitIndex", before=lambda s, i: _mark("commit_index", i))
    _wrap(Replica, "apply", before=lambda s, i, p: _mark("applied", i))

    def sent(self, node, message):
        kind = message.get("type")
        if kind == "append_entries":
            entries = message.get("entries") or []
            _mark("ae_sent", entries[-1][1] if entries else None, message.get("commit_index"))
        elif kind in ("apply_command", "apply_command_response"):
            _mark(kind + "_sent", message.get("log_idx"))

    _wrap(DurableTransport, "send", before=sent)
    _wrap(DurableTransport, "_send_ack", before=lambda s, node, m, index: _mark("ack_sent", index))

    def received(self, node, message):
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "append_entries":
            entries = message.get("entries") or []
            _mark("ae_received", entries[-1][1] if entries else None, message.get("commit_index"))
        elif kind == "next_node_idx":
            _mark("ack_received", message.get("next_node_idx", 0) - 1)
        elif kind in ("apply_command", "apply_command_response"):
            _mark(kind + "_received", message.get("log_idx"))

    _wrap(DurableTransport, "_onMessageReceived", before=received)
    for name in ("sync_completed", "wake_tick_thread"):  # the sync thread's wake, whichever this build has
        if hasattr(DurableTransport, name):
            _wrap(DurableTransport, name, before=lambda s: _mark("sync_told"))
    post = LoopBridge.post

    def bridge_post(self, fn, *args):
        name = getattr(fn, "__name__", "")
        if name != "answered":
            return post(self, fn, *args)
        _mark("posted")

        def run(*a):
            _mark("loop_ran")
            return fn(*a)

        return post(self, run, *args)

    LoopBridge.post = bridge_post


def _dump_forever(path: str) -> None:
    done = 0
    while True:
        time.sleep(0.3)
        upto = len(_events)
        if upto > done:
            with open(path, "a") as f:
                for e in _events[done:upto]:
                    f.write(json.dumps(e) + "\n")
            done = upto


def node_main(argv: list[str]) -> int:
    from api.cli import main

    folder = os.environ[TRACE_ENV]
    node_id = argv[argv.index("--id") + 1]
    install_patches()
    threading.Thread(target=_dump_forever, args=(os.path.join(folder, f"{node_id}.jsonl"),), daemon=True).start()
    return main(argv)


# -- the client and the table ------------------------------------------------------------------

def write_in_turn(url: str, count: int, prefix: str) -> list[tuple[int, int]]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    spans = []
    value = b"v" * 128
    for i in range(count):
        t0 = time.perf_counter_ns()
        conn.request("PUT", f"/v1/kv/{prefix}{i:012d}", body=value)
        resp = conn.getresponse()
        body = resp.read()
        t1 = time.perf_counter_ns()
        if resp.status != 200 or body.strip() != b"true":
            raise SystemExit(f"write {i}: {resp.status} {body[:100]!r}")
        spans.append((t0, t1))
        time.sleep(0.002)  # the nodes settle between writes: each write's stages are its own
    conn.close()
    return spans


def load(folder: str) -> dict[str, list[tuple]]:
    out = {}
    for name in sorted(os.listdir(folder)):
        if name.endswith(".jsonl"):
            with open(os.path.join(folder, name)) as f:
                out[name[:-6]] = [tuple(json.loads(line)) for line in f]
    return out


def _first(events, t0, t1, name, pred=lambda e: True):
    for e in events:
        if t0 <= e[0] <= t1 and e[1] == name and pred(e):
            return e[0]
    return None


def stages_of_write(t0: int, t1: int, entry: int, via: str, leader: str, follower: str, other: str,
                    ev: dict[str, list[tuple]]) -> list[tuple[str, int | None]]:
    """The named stage times of the write committed as `entry` that took [t0, t1] at the client.
    `via`: the node that received it; `follower`: the follower whose acknowledgement committed it
    (the first to acknowledge), `other` the third node."""
    L, F = ev[leader], ev[follower]
    R = ev[via]
    at = []
    at.append(("client sent", t0))
    at.append(("http parsed", _first(R, t0, t1, "http_parsed")))
    at.append(("submit (loop)", _first(R, t0, t1, "submit")))
    if via != leader:
        s = _first(R, t0, t1, "submit")
        at.append(("via: tick woken", _first(R, s or t0, t1, "poll_returned")))
        at.append(("via: apply_command sent", _first(R, t0, t1, "apply_command_sent")))
        at.append(("leader: apply_command received", _first(L, t0, t1, "apply_command_received")))
    else:
        s = _first(R, t0, t1, "submit")
        at.append(("leader: tick woken", _first(L, s or t0, t1, "poll_returned")))
    at.append(("leader: journal add", _first(L, t0, t1, "journal_add", lambda e: e[2] == entry)))
    at.append(("leader: append_entries sent", _first(L, t0, t1, "ae_sent", lambda e: e[2] == entry)))
    at.append(("follower: append_entries received", _first(F, t0, t1, "ae_received", lambda e: e[2] == entry)))
    at.append(("follower: journal add", _first(F, t0, t1, "journal_add", lambda e: e[2] == entry)))
    at.append(("follower: sync start", _first(F, t0, t1, "sync_start", lambda e: e[2] >= entry)))
    at.append(("follower: sync end", _first(F, t0, t1, "sync_end", lambda e: e[2] >= entry)))
    at.append(("follower: ack sent", _first(F, t0, t1, "ack_sent", lambda e: e[2] >= entry)))
    at.append(("leader: ack received", _first(L, t0, t1, "ack_received", lambda e: e[2] >= entry)))
    at.append(("leader: commit index", _first(L, t0, t1, "commit_index", lambda e: e[2] >= entry)))
    at.append(("leader: applied", _first(L, t0, t1, "applied", lambda e: e[2] == entry)))
    if via == leader:
        at.append(("leader: loop ran the answer", _first(L, t0, t1, "loop_ran")))
    else:
        at.append(("via: append_entries with commit received",
                   _first(R, t0, t1, "ae_received", lambda e: e[3] is not None and e[3] >= entry)))
        at.append(("via: applied", _first(R, t0, t1, "applied", lambda e: e[2] == entry)))
        at.append(("via: loop ran the answer", _first(R, t0, t1, "loop_ran")))
    at.append(("http reply", _first(R, t0, t1, "http_reply")))
    at.append(("client received", t1))
    # side facts, not on the path's chain
    at.append(("(leader sync end)", _first(L, t0, t1, "sync_end", lambda e: e[2] >= entry)))
    return at


def table(rows: list[list[tuple[str, int | None]]], title: str) -> str:
    names = [n for n, _ in rows[0]]
    chain = [n for n in names if not n.startswith("(")]
    lines = [f"\n{title} ({len(rows)} writes): gap from the previous stage, ms",
             f"{'stage':<46} {'median':>8} {'p90':>8} {'seen':>6}"]
    for i, name in enumerate(chain[1:], 1):
        gaps = []
        for row in rows:
            d = dict(row)
            prev = next((d[p] for p in reversed(chain[:i]) if d[p] is not None), None)
            if d[name] is not None and prev is not None:
                gaps.append((d[name] - prev) / 1e6)
        if gaps:
            gaps.sort()
            lines.append(f"{name:<46} {statistics.median(gaps):8.3f} {gaps[int(0.9 * (len(gaps) - 1))]:8.3f} "
                         f"{len(gaps):6d}")
        else:
            lines.append(f"{name:<46} {'-':>8} {'-':>8} {0:6d}")
    totals = sorted((dict(r)["client received"] - dict(r)["client sent"]) / 1e6 for r in rows)
    lines.append(f"{'total (client)':<46} {statistics.median(totals):8.3f} {totals[int(0.9 * (len(totals) - 1))]:8.3f}")
    slowest = sorted(rows, key=lambda r: dict(r)["client received"] - dict(r)["client sent"])[-3:]
    for row in reversed(slowest):  # where a stall sat: the widest gap of each of the 3 slowest writes
        d, widest = dict(row), (0.0, "")
        for i, name in enumerate(chain[1:], 1):
            prev = next((d[p] for p in reversed(chain[:i]) if d[p] is not None), None)
            if d[name] is not None and prev is not None:
                widest = max(widest, ((d[name] - prev) / 1e6, name))
        lines.append(f"  a slow write: {(d['client received'] - d['client sent']) / 1e6:.3f} ms, of which "
                     f"{widest[0]:.3f} ms before '{widest[1]}'")
    for side in ("(leader sync end)",):
        ds = sorted((dict(r)[side] - dict(r)["leader: journal add"]) / 1e6 for r in rows
                    if dict(r)[side] is not None and dict(r)["leader: journal add"] is not None)
        if ds:
            lines.append(f"{'leader journal add -> its sync end':<46} {statistics.median(ds):8.3f} "
                         f"{ds[int(0.9 * (len(ds) - 1))]:8.3f} {len(ds):6d}")
    return "\n".join(lines)


def process_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fdatasync_floor(folder: str, count: int = 200) -> str:
    path = os.path.join(folder, "floor.bin")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    times = []
    try:
        for _ in range(count):
            os.write(fd, b"x" * 200)
            t = time.perf_counter_ns()
            os.fdatasync(fd)
            times.append((time.perf_counter_ns() - t) / 1e6)
    finally:
        os.close(fd)
        os.unlink(path)
    times.sort()
    return (f"bare fdatasync of a 200-byte append ({count}): median {statistics.median(times):.3f} ms, "
            f"p90 {times[int(0.9 * (count - 1))]:.3f} ms")


def main() -> int:
    if sys.argv[1:2] == ["--node"]:
        return node_main(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writes", type=int, default=500)
    parser.add_argument("--keep", action="store_true", help="keep the cluster's folder and traces")
    args = parser.parse_args()
    from loadtest.harness.cluster import Cluster

    root = tempfile.mkdtemp(prefix="raftkv-stages-")
    traces = os.path.join(root, "traces")
    os.makedirs(traces)
    os.environ[TRACE_ENV] = traces
    print(fdatasync_floor(root))
    cluster = Cluster(root, command=[sys.executable, "-m", "loadtest.bench.write_stages", "--node"]).start()
    try:
        leader = cluster.leader(timeout=30)
        follower_nodes = [n for n in cluster.nodes if n is not leader]
        write_in_turn(leader.url, 50, "warm")  # connections, caches
        runs, cpu = {}, {}
        for title, via, prefix in (("to the leader", leader, "l"), ("to a follower", follower_nodes[0], "f")):
            before = {n.node_id: process_cpu_s(n.proc.pid) for n in cluster.nodes}
            runs[title] = (via, write_in_turn(via.url, args.writes, prefix))
            cpu[title] = {n.node_id: (process_cpu_s(n.proc.pid) - before[n.node_id]) / args.writes * 1e6
                          for n in cluster.nodes}
        time.sleep(1.0)  # the nodes dump their traces
    finally:
        cluster.stop()
    ev = load(traces)
    ids = {n.node_id: n for n in cluster.nodes}
    for title, (via, spans) in runs.items():
        rows = []
        for t0, t1 in spans:
            adds = [e for e in ev[leader.node_id] if t0 <= e[0] <= t1 and e[1] == "journal_add"]
            if len(adds) != 1:
                continue  # a write that did not map to exactly one entry (a no-op, a retry)
            entry = adds[0][2]
            acks = [(e[0], nid) for nid in ids if nid != leader.node_id for e in ev[nid]
                    if t0 <= e[0] <= t1 and e[1] == "ack_sent" and e[2] >= entry]
            if not acks:
                continue
            first_follower = min(acks)[1]
            other = next(nid for nid in ids if nid not in (leader.node_id, first_follower))
            rows.append(stages_of_write(t0, t1, entry, via.node_id, leader.node_id, first_follower, other, ev))
        print(table(rows, f"writes sent {title} ({via.node_id}; leader {leader.node_id})"))
        wakes = {nid: statistics.median(sum(1 for e in ev[nid] if t0 <= e[0] <= t1 and e[1] == "poll_returned")
                                        for t0, t1 in spans) for nid in ids}
        print("tick-thread polls returned per write (median): "
              + ", ".join(f"{nid}{' (leader)' if nid == leader.node_id else ''} {w:g}" for nid, w in wakes.items()))
        print("node CPU per write, µs (tracing included): "
              + ", ".join(f"{nid} {c:.0f}" for nid, c in cpu[title].items()))
    if args.keep:
        print(f"traces kept in {traces}")
    else:
        import shutil
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
