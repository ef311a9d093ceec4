"""Locust scenarios for raftkv (and any Consul-KV-compatible cluster).

Pick a scenario and the cluster with environment variables, then run locust as usual:

    RAFTKV_NODES=127.0.0.1:8501,127.0.0.1:8502,127.0.0.1:8503 RAFTKV_SCENARIO=mixed \\
        locust -f loadtest/locustfiles/locustfile.py --headless -u 32 -r 32 -t 60s --host http://127.0.0.1:8501

or let `raftkv loadtest` start a local cluster and do all of it (README, "Load tests").

| RAFTKV_SCENARIO  | what each user does                                                          |
| ---------------- | ---------------------------------------------------------------------------- |
| write-heavy      | 90 % PUT, 10 % default GET                                                    |
| strong-read-heavy| 90 % GET ?consistent, 10 % PUT                                                |
| stale-read       | 95 % GET ?stale, 5 % PUT                                                      |
| mixed            | 40 % default GET, 20 % consistent GET, 25 % PUT, 15 % check-and-set           |
| watchers         | blocking GET ?index=N&wait=10s on one key at a time; 1 user in 10 writes      |

Other knobs: RAFTKV_KEY_BYTES (16), RAFTKV_VALUE_BYTES (128), RAFTKV_KEYSPACE (10000).
Requests go to a random node each time; a 404 on a never-written key is a result, not a failure.
"""

from __future__ import annotations

import os
import random

from locust import FastHttpUser, between, constant, task

NODES = [n.strip() for n in os.environ.get("RAFTKV_NODES", "127.0.0.1:8501").split(",") if n.strip()]
SCENARIO = os.environ.get("RAFTKV_SCENARIO", "mixed")
KEY_BYTES = int(os.environ.get("RAFTKV_KEY_BYTES", "16"))
VALUE = b"v" * int(os.environ.get("RAFTKV_VALUE_BYTES", "128"))
KEYSPACE = int(os.environ.get("RAFTKV_KEYSPACE", "10000"))
WEIGHTS = {
    "write-heavy": {"put": 90, "get_default": 10},
    "strong-read-heavy": {"get_consistent": 90, "put": 10},
    "stale-read": {"get_stale": 95, "put": 5},
    "mixed": {"get_default": 40, "get_consistent": 20, "put": 25, "cas": 15},
    "watchers": {"watch": 9, "put": 1},
}
if SCENARIO not in WEIGHTS:
    raise SystemExit(f"RAFTKV_SCENARIO must be one of {', '.join(WEIGHTS)}, not {SCENARIO!r}")


def key_name(i: int) -> str:
    base = f"lt/{i:08d}"
    return (base + "x" * KEY_BYTES)[:KEY_BYTES] if KEY_BYTES >= len(base) else base[-KEY_BYTES:]


class RaftkvUser(FastHttpUser):
    wait_time = constant(0) if SCENARIO != "watchers" else between(0, 0.1)
    network_timeout = 30.0
    connection_timeout = 5.0

    def _url(self, key: str, query: str = "") -> str:
        return f"http://{random.choice(NODES)}/v1/kv/{key}{query}"

    def _get(self, query: str, name: str) -> None:
        key = key_name(random.randrange(KEYSPACE))
        with self.client.get(self._url(key, query), name=name, catch_response=True) as r:
            if r.status_code in (200, 404):  # never written yet is an answer too
                r.success()
            else:
                r.failure(f"{r.status_code} {r.text[:80] if r.text else ''}")

    def _put(self, name: str = "PUT /v1/kv/<key>", query: str = "") -> None:
        key = key_name(random.randrange(KEYSPACE))
        with self.client.put(self._url(key, query), data=VALUE, name=name, catch_response=True) as r:
            if r.status_code == 200:
                r.success()
            else:
                r.failure(f"{r.status_code} {r.text[:80] if r.text else ''}")

    @task(WEIGHTS[SCENARIO].get("put", 0))
    def put(self) -> None:
        self._put()

    @task(WEIGHTS[SCENARIO].get("get_default", 0))
    def get_default(self) -> None:
        self._get("", "GET /v1/kv/<key>")

    @task(WEIGHTS[SCENARIO].get("get_consistent", 0))
    def get_consistent(self) -> None:
        self._get("?consistent", "GET /v1/kv/<key>?consistent")

    @task(WEIGHTS[SCENARIO].get("get_stale", 0))
    def get_stale(self) -> None:
        self._get("?stale", "GET /v1/kv/<key>?stale")

    @task(WEIGHTS[SCENARIO].get("cas", 0))
    def cas(self) -> None:
        """Read a key's ModifyIndex, then write it back only if unchanged (false is a valid answer)."""
        key = key_name(random.randrange(KEYSPACE))
        with self.client.get(self._url(key), name="GET (for cas)", catch_response=True) as r:
            if r.status_code not in (200, 404):
                r.failure(str(r.status_code))
                return
            r.success()
            index = r.json()[0]["ModifyIndex"] if r.status_code == 200 else 0
        with self.client.put(self._url(key, f"?cas={index}"), data=VALUE, name="PUT ?cas", catch_response=True) as r:
            if r.status_code == 200:
                r.success()
            else:
                r.failure(str(r.status_code))

    @task(WEIGHTS[SCENARIO].get("watch", 0))
    def watch(self) -> None:
        key = key_name(random.randrange(min(KEYSPACE, 100)))
        with self.client.get(self._url(key), name="GET (watch start)", catch_response=True) as r:
            if r.status_code not in (200, 404):
                r.failure(str(r.status_code))
                return
            r.success()
            index = r.headers.get("X-Consul-Index", "1")
        with self.client.get(self._url(key, f"?index={index}&wait=10s&stale"), name="GET ?index&wait (blocking)",
                             catch_response=True) as r:
            if r.status_code in (200, 404):
                r.success()
            else:
                r.failure(str(r.status_code))
