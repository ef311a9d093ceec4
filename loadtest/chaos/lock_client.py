"""One contender of the chaos lock workload, as its own process (so that it can be paused).

    python -m loadtest.chaos.lock_client NAME ADDRS LOCK_KEY FENCE_KEY OUT DURATION_S TTL_S [fenced|unfenced]

Until DURATION_S has passed it repeats: create a session (TTL_S, lock-delay 1 s), acquire
LOCK_KEY (its LockIndex is this tenure's fencing token), make fenced writes for 1 to 3 s while
renewing the session, then release and destroy it. A fenced write is how a resource that
checks tokens behaves, built from raftkv's own operations: FENCE_KEY holds the highest token
that ever wrote; a write reads it, is refused when its token is lower, else commits
`cas FENCE_KEY = token` and `set FENCE_KEY/data` in one transaction (so a raced check fails
the cas instead of letting an old token through). `unfenced` makes the resource skip the
check (a plain transaction of both sets): the broken resource whose verdict must FAIL.

Every event is one JSON line in OUT, flushed at once: acquired (token, session), write (token,
ok, index of the commit, or why refused; `sent`: when it began), lost, released; `t` is
time.time() when recorded. Bounded: every
HTTP call has a timeout and every loop the deadline.
"""

from __future__ import annotations

import base64
import json
import random
import sys
import time
import urllib.error
import urllib.request

HTTP_TIMEOUT_S = 5.0
WRITE_EVERY_S = 0.2


class Client:
    def __init__(self, name: str, addrs: list[str], out, fenced: bool = True) -> None:
        self.name, self.addrs, self.out, self.fenced = name, addrs, out, fenced
        self.next = 0

    def call(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        """(status, body) from the first node that answers without a 5xx (a node cut off from
        the majority times out with one), starting with a rotating one; the last 5xx, or
        (0, reason), when none does."""
        reason, last = b"", None
        for i in range(len(self.addrs)):
            addr = self.addrs[(self.next + i) % len(self.addrs)]
            req = urllib.request.Request(f"http://{addr}{path}", data=body, method=method)
            try:
                with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT_S) as resp:
                    return resp.status, resp.read()
            except urllib.error.HTTPError as exc:
                with exc:
                    if exc.code < 500:
                        return exc.code, exc.read()
                    last = (exc.code, exc.read())
                    self.next += 1
            except (urllib.error.URLError, OSError) as exc:
                reason = str(exc).encode()
                self.next += 1
        return last or (0, reason)

    def record(self, event: str, **fields) -> None:
        self.out.write(json.dumps({"t": time.time(), "client": self.name, "ev": event, **fields}) + "\n")
        self.out.flush()


def run(client: Client, lock_key: str, fence_key: str, duration_s: float, ttl_s: float) -> None:
    deadline = time.monotonic() + duration_s
    rng = random.Random(client.name)
    while time.monotonic() < deadline:
        status, body = client.call("PUT", "/v1/session/create",
                                   json.dumps({"TTL": f"{ttl_s:g}s", "LockDelay": "1s"}).encode())
        if status != 200:
            time.sleep(0.5)
            continue
        session = json.loads(body)["ID"]
        token = acquire(client, lock_key, session, deadline, ttl_s)
        if token is not None:
            hold(client, lock_key, fence_key, session, token, time.monotonic() + rng.uniform(1, 3), ttl_s)
        client.call("PUT", f"/v1/session/destroy/{session}")


def acquire(client: Client, lock_key: str, session: str, deadline: float, ttl_s: float) -> int | None:
    renewed = time.monotonic()
    while time.monotonic() < deadline:
        if time.monotonic() - renewed > ttl_s / 3:
            status, _ = client.call("PUT", f"/v1/session/renew/{session}")
            if status == 404:
                return None
            renewed = time.monotonic() if status == 200 else renewed
        status, body = client.call("PUT", f"/v1/kv/{lock_key}?acquire={session}")
        if status == 200 and json.loads(body) is True:
            status, body = client.call("GET", f"/v1/kv/{lock_key}?consistent")
            if status == 200:
                entry = json.loads(body)[0]
                if entry.get("Session") == session:
                    client.record("acquired", token=entry["LockIndex"], session=session)
                    return int(entry["LockIndex"])
        time.sleep(0.25)
    return None


def hold(client: Client, lock_key: str, fence_key: str, session: str, token: int, until: float,
         ttl_s: float) -> None:
    renewed = time.monotonic()
    seq = 0
    while True:  # a write first: a holder paused in its sleep writes once more when it wakes up
        seq += 1
        fenced_write(client, fence_key, token, seq)
        if time.monotonic() >= until:
            break
        if time.monotonic() - renewed > ttl_s / 3:
            status, _ = client.call("PUT", f"/v1/session/renew/{session}")
            if status == 404:
                client.record("lost", token=token)
                return
            renewed = time.monotonic() if status == 200 else renewed
        time.sleep(WRITE_EVERY_S)
    status, body = client.call("PUT", f"/v1/kv/{lock_key}?release={session}")
    client.record("released" if status == 200 and json.loads(body) is True else "lost", token=token)


def fenced_write(client: Client, fence_key: str, token: int, seq: int) -> None:
    if not client.fenced:
        return unfenced_write(client, fence_key, token, seq)
    sent = time.time()  # a write sent before a pause may be recorded after it
    status, body = client.call("GET", f"/v1/kv/{fence_key}?consistent")
    if status not in (200, 404):
        client.record("write", sent=sent, token=token, ok=False, why=f"fence read: {status}")
        return
    entry = json.loads(body)[0] if status == 200 else None
    highest = int(base64.b64decode(entry["Value"])) if entry and entry["Value"] else 0
    if token < highest:
        client.record("write", sent=sent, token=token, ok=False, why="stale token", highest=highest)
        return
    txn = [{"KV": {"Verb": "cas", "Key": fence_key, "Index": entry["ModifyIndex"] if entry else 0,
                   "Value": base64.b64encode(str(token).encode()).decode()}},
           {"KV": {"Verb": "set", "Key": fence_key + "/data",
                   "Value": base64.b64encode(f"{client.name}:{token}:{seq}".encode()).decode()}}]
    status, body = client.call("PUT", "/v1/txn", json.dumps(txn).encode())
    if status == 200:
        index = json.loads(body)["Results"][1]["KV"]["ModifyIndex"]
        client.record("write", sent=sent, token=token, ok=True, index=index, seq=seq)
        return
    now_highest = _highest(client, fence_key) if status == 409 else None
    if now_highest is not None and now_highest > token:  # the cas caught a newer token written meanwhile
        client.record("write", sent=sent, token=token, ok=False, why="stale token", highest=now_highest, by="cas")
    else:
        client.record("write", sent=sent, token=token, ok=False, why=f"txn: {status}")


def unfenced_write(client: Client, fence_key: str, token: int, seq: int) -> None:
    """The same write by a resource that does not check tokens (`unfenced`)."""
    sent = time.time()
    txn = [{"KV": {"Verb": "set", "Key": key, "Value": base64.b64encode(value.encode()).decode()}}
           for key, value in ((fence_key, str(token)), (fence_key + "/data", f"{client.name}:{token}:{seq}"))]
    status, body = client.call("PUT", "/v1/txn", json.dumps(txn).encode())
    if status == 200:
        index = json.loads(body)["Results"][1]["KV"]["ModifyIndex"]
        client.record("write", sent=sent, token=token, ok=True, index=index, seq=seq)
    else:
        client.record("write", sent=sent, token=token, ok=False, why=f"txn: {status}")


def _highest(client: Client, fence_key: str) -> int | None:
    status, body = client.call("GET", f"/v1/kv/{fence_key}?consistent")
    if status != 200:
        return None
    entry = json.loads(body)[0]
    return int(base64.b64decode(entry["Value"])) if entry["Value"] else 0


def main(argv: list[str]) -> int:
    name, addrs, lock_key, fence_key, out_path, duration_s, ttl_s = argv[:7]
    fenced = argv[7:] != ["unfenced"]
    with open(out_path, "a", encoding="utf-8") as out:
        run(Client(name, addrs.split(","), out, fenced), lock_key, fence_key, float(duration_s), float(ttl_s))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
