"""node.engine.resolver: PySyncObj's peer look-ups, off the tick thread and kept briefly."""

import threading
import time

import pysyncobj.dns_resolver
from pysyncobj.node import TCPNode

from node.engine import resolver
from node.engine.resolver import BackgroundResolver


class Names:
    """A name table the test changes, standing in for DNS (the look-up function, not a socket)."""

    def __init__(self) -> None:
        self.table: dict[str, list[str]] = {}
        self.asked: list[str] = []
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, host: str) -> list[str]:
        self.asked.append(host)
        self.gate.wait(10)
        return list(self.table.get(host, []))


def wait_until(predicate, timeout_s: float = 5.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError("timed out")


def test_resolve_never_blocks_and_answers_once_a_late_name_appears():
    names = Names()
    r = BackgroundResolver(refresh_s=60, retry_s=0.0, lookup=names)
    names.gate.clear()  # a DNS server that does not answer
    assert r.resolve("raftkv-2.peers") is None  # answered at once, looked up in a thread
    names.gate.set()
    wait_until(lambda: "raftkv-2.peers" in names.asked)
    names.table["raftkv-2.peers"] = ["10.0.0.7"]
    assert wait_until(lambda: r.resolve("raftkv-2.peers")) == "10.0.0.7"


def test_an_answer_is_refreshed_after_the_refresh_time_and_kept_through_a_failed_lookup():
    names = Names()
    names.table["p"] = ["10.0.0.1"]
    r = BackgroundResolver(refresh_s=0.0, retry_s=0.0, lookup=names)
    assert r.prime("p") and r.resolve("p") == "10.0.0.1"
    names.table["p"] = ["10.0.0.2"]  # the pod came back with another IP
    assert wait_until(lambda: r.resolve("p") == "10.0.0.2")
    names.table.pop("p")  # a DNS hiccup: the last answer stays
    count = len(names.asked)
    wait_until(lambda: r.resolve("p") and len(names.asked) > count + 1)  # looked up again, and failed
    assert r.resolve("p") == "10.0.0.2"


def test_one_lookup_per_name_at_a_time_and_none_for_ip_literals():
    names = Names()
    names.gate.clear()
    r = BackgroundResolver(refresh_s=0.0, retry_s=0.0, lookup=names)
    for _ in range(50):
        assert r.resolve("slow") is None
        assert r.resolve("127.0.0.1") == "127.0.0.1" and r.resolve("::1") == "::1"
    wait_until(lambda: names.asked)
    assert names.asked == ["slow"]
    names.gate.set()


def test_prime_reports_whether_the_bind_host_resolves():
    r = BackgroundResolver()
    assert r.prime("localhost") and r.resolve("localhost") in ("127.0.0.1", "::1")
    assert not r.prime("no-such-host.invalid")
    assert r.prime("0.0.0.0")


def test_install_makes_pysyncobj_nodes_resolve_through_it():
    installed = resolver.install()
    assert resolver.installed() and resolver.install() is installed
    assert pysyncobj.dns_resolver.globalDnsResolver() is installed
    installed.prime("localhost")
    assert TCPNode("localhost:7001").ip in ("127.0.0.1", "::1")
