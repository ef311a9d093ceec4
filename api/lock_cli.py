"""`raftkv lock PREFIX -- COMMAND...`: run a command while holding a lock, as `consul lock`.

1. Create a session (TTL --ttl, lock-delay --lock-delay, behavior release) and acquire
   PREFIX/.lock with it, waiting (a blocking query on the key) while another session holds it.
2. Run COMMAND with the fencing token in its environment: RAFTKV_LOCK_INDEX (the key's
   LockIndex, which grows with every acquisition), RAFTKV_LOCK_KEY and RAFTKV_LOCK_SESSION.
3. Renew the session every TTL/2 and watch the key. The lock is lost when a renewal finds the
   session gone, when the key is no longer held by it, or when no renewal has succeeded for a
   whole TTL (the leader may have invalidated it meanwhile): then COMMAND gets SIGTERM, and
   SIGKILL --kill-after later.
4. When COMMAND exits (or this process gets SIGTERM or SIGINT, passed on to COMMAND), release
   the lock, destroy the session, and exit with COMMAND's status (128 + N for signal N); 1 when
   the lock was lost, whatever COMMAND's status, so that a caller knows its work may be partial.

A lock cannot stop a paused COMMAND (or this process) from acting after its session expired:
resources it writes to should check the fencing token (README, "Sessions and locks").
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time

from api.cli_http import ClientError, Endpoint, addr_option, endpoint, failure, request

LOCK_SUFFIX = "/.lock"
WATCH_WAIT_S = 1.0  # each blocking query on the key returns within this, to renew on time


def register(sub) -> None:
    lock = sub.add_parser("lock", help="run a command while holding a lock (as consul lock)", parents=[addr_option()])
    lock.add_argument("prefix", help="the lock is the key PREFIX/.lock")
    lock.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    lock.add_argument("--ttl", type=float, default=15.0, help="session TTL in seconds, 10 to 86400 (default 15)")
    lock.add_argument("--lock-delay", type=float, default=15.0,
                      help="seconds the lock stays unavailable after it was lost (default 15, at most 60)")
    lock.add_argument("--timeout", type=float, default=0.0,
                      help="give up after waiting this many seconds for the lock (default 0: wait)")
    lock.add_argument("--kill-after", type=float, default=5.0,
                      help="SIGKILL the command this long after SIGTERM (default 5)")
    lock.set_defaults(_run=run)


def run(args: argparse.Namespace) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        print("raftkv lock: no command given (raftkv lock PREFIX -- COMMAND ...)", file=sys.stderr)
        return 2
    if not 10 <= args.ttl <= 86400 or not 0 <= args.lock_delay <= 60:
        print("raftkv lock: --ttl must be 10 to 86400 seconds and --lock-delay 0 to 60", file=sys.stderr)
        return 2
    key = args.prefix.rstrip("/") + LOCK_SUFFIX
    try:
        lock = Lock(endpoint(args), key, args.ttl, args.lock_delay, args.token)
        lock_index = lock.acquire(args.timeout)
    except ClientError as exc:
        print(f"raftkv lock: {exc}", file=sys.stderr)
        return 1
    if lock_index is None:
        print(f"raftkv lock: {key} not acquired within {args.timeout:g}s", file=sys.stderr)
        lock.destroy()
        return 1
    env = {**os.environ, "RAFTKV_LOCK_INDEX": str(lock_index), "RAFTKV_LOCK_KEY": key,
           "RAFTKV_LOCK_SESSION": lock.session}
    try:
        child = subprocess.Popen(command, env=env)
    except OSError as exc:
        print(f"raftkv lock: cannot run {command[0]}: {exc.strerror}", file=sys.stderr)
        lock.release()
        return 127
    status = supervise(child, lock, args.kill_after)
    lost = lock.lost.is_set()
    lock.release()
    if lost:
        print(f"raftkv lock: lost {key} ({lock.why}); the command was stopped", file=sys.stderr)
        return 1
    return status


def supervise(child: subprocess.Popen, lock: Lock, kill_after_s: float) -> int:
    """Wait for `child` while the lock's keeper runs; stop it when the lock is lost or this
    process is told to stop. Its exit status, 128 + N for a signal N."""
    stop = threading.Event()

    def on_signal(signum, _frame) -> None:
        stop.set()
        if child.poll() is None:
            child.send_signal(signum)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    keeper = threading.Thread(target=lock.keep, args=(stop,), daemon=True)
    keeper.start()
    try:
        while child.poll() is None:
            if lock.lost.wait(0.2):
                child.terminate()
                try:
                    child.wait(kill_after_s)
                except subprocess.TimeoutExpired:
                    child.kill()
                break
        code = child.wait()
    finally:
        stop.set()
        keeper.join(WATCH_WAIT_S + 11)
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 128 - code if code < 0 else code


class Lock:
    """One session and the lock it takes on `key`."""

    def __init__(self, addr: Endpoint, key: str, ttl_s: float, lock_delay_s: float, token: str | None) -> None:
        self.addr, self.key, self.ttl_s, self.token = addr, key, ttl_s, token
        body = {"Name": f"raftkv lock {key}", "TTL": f"{ttl_s:g}s", "LockDelay": f"{lock_delay_s:g}s",
                "Behavior": "release"}
        status, _, reply = request(addr, "PUT", "/v1/session/create", body=json.dumps(body).encode(), token=token)
        if status != 200:
            raise failure(status, reply)
        self.session: str = json.loads(reply)["ID"]
        self.lost = threading.Event()
        self.why = ""
        self.renewed_at = time.monotonic()

    def acquire(self, timeout_s: float) -> int | None:
        """The LockIndex once this session holds the key; None after `timeout_s` (0: no limit).
        While another session holds it, waits for the key to change (blocking queries), renewing."""
        deadline = time.monotonic() + timeout_s if timeout_s > 0 else None
        entry, index = self._read(index=0)
        while deadline is None or time.monotonic() < deadline:
            if time.monotonic() - self.renewed_at >= self.ttl_s / 2:
                self._renew()
                if self.lost.is_set():
                    raise ClientError(f"the session expired while waiting for {self.key}")
            holder = entry.get("Session") if entry is not None else None
            if holder == self.session:
                return int(entry["LockIndex"])  # type: ignore[index]
            if holder is None:  # free: try to take it
                status, _, reply = request(self.addr, "PUT", f"/v1/kv/{self.key}", {"acquire": self.session},
                                           token=self.token)
                if status != 200:
                    raise failure(status, reply)
                if json.loads(reply) is not True:
                    time.sleep(0.5)  # free but refused: under lock-delay (or taken meanwhile)
                entry, index = self._read(index=0)
                continue
            # Held by another session: wait for the key to change (returning in time to renew).
            entry, index = self._read(index=index, wait_s=WATCH_WAIT_S)
        return None

    def keep(self, stop: threading.Event) -> None:
        """Renew every TTL/2 and watch the key until `stop`; set `lost` (with `why`) if the lock goes."""
        index = 0
        while not stop.is_set() and not self.lost.is_set():
            try:
                if time.monotonic() - self.renewed_at >= self.ttl_s / 2:
                    self._renew()
                entry, index = self._read(index=index, wait_s=WATCH_WAIT_S)
                if entry is None or entry.get("Session") != self.session:
                    self._lose("the key is no longer held by this session")
            except ClientError as exc:
                if time.monotonic() - self.renewed_at >= self.ttl_s:
                    self._lose(f"no renewal for a whole TTL ({exc})")
                else:
                    stop.wait(0.5)

    def _renew(self) -> None:
        sent = time.monotonic()
        status, _, reply = request(self.addr, "PUT", f"/v1/session/renew/{self.session}", token=self.token)
        if status == 404:
            self._lose("the session expired")
            return
        if status != 200:
            raise failure(status, reply)
        self.renewed_at = sent  # the TTL counts from when the renewal was sent, at the latest

    def _read(self, index: int, wait_s: float = 0.0) -> tuple[dict | None, int]:
        query = {"consistent": ""} if not index else {"index": str(index), "wait": f"{wait_s:g}s"}
        status, headers, reply = request(self.addr, "GET", f"/v1/kv/{self.key}", query, token=self.token,
                                         timeout=wait_s + 10)
        if status not in (200, 404):
            raise failure(status, reply)
        entries = json.loads(reply) if status == 200 else []
        return (entries[0] if entries else None), int(headers.get("X-Consul-Index", "0") or 0)

    def _lose(self, why: str) -> None:
        if not self.lost.is_set():
            self.why = why
            self.lost.set()

    def release(self) -> None:
        """Release the key and destroy the session; best effort (the TTL ends it otherwise)."""
        try:
            if not self.lost.is_set():
                request(self.addr, "PUT", f"/v1/kv/{self.key}", {"release": self.session}, token=self.token)
        except ClientError:
            pass
        self.destroy()

    def destroy(self) -> None:
        try:
            request(self.addr, "PUT", f"/v1/session/destroy/{self.session}", token=self.token)
        except ClientError:
            pass
