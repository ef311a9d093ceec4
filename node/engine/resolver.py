"""Peers' host names, looked up off the tick thread and kept only briefly.

PySyncObj looks up a peer's host at every connect attempt (`TCPNode.ip`) through one
process-wide `pysyncobj.dns_resolver.DnsCachingResolver`, which, as 0.3.17 ships it:
* runs `getaddrinfo` on the tick thread: a slow DNS server stalls heartbeats and elections;
* keeps an answer 600 s: a StatefulSet pod restarted with a new IP stays unreachable for ten
  minutes from the peers that dial it (between voters only the greater address dials);
* keeps a failure 30 s, and logs two lines per failed look-up.

`install()` puts a `BackgroundResolver` in its place (the module-level `_g_resolver`, which
`globalDnsResolver()` returns): `resolve` answers at once from what it has (None until a name
first resolves: PySyncObj then skips that connect attempt and tries again `reconnect_s` later)
and starts a look-up in a thread when the answer is older than the refresh time
(`RaftSettings.dns_refresh_s`, given through SyncObjConf's dnsCacheTime/dnsFailCacheTime). One
look-up per name at a time; the names are the members' hosts, so the threads are few.
The bind host is looked up synchronously by `prime` before SyncObj binds (NOTES.md, "Host names").
"""

from __future__ import annotations

import ipaddress
import logging
import random
import socket
import threading
import time

import pysyncobj.dns_resolver as _pysyncobj_dns

log = logging.getLogger(__name__)


def lookup(host: str) -> list[str]:
    """The host's IP addresses, IPv4 first as PySyncObj prefers them; [] when it does not resolve."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return []
    v4 = sorted({str(i[4][0]) for i in infos if i[0] == socket.AF_INET})
    return v4 or sorted({str(i[4][0]) for i in infos})


class BackgroundResolver:
    """PySyncObj's resolver interface (`resolve`, `setTimeouts`, `setPreferredAddrFamily`)."""

    def __init__(self, refresh_s: float = 5.0, retry_s: float = 1.0, lookup=lookup) -> None:
        self._refresh_s = refresh_s  # an answer is looked up again after this long
        self._retry_s = retry_s  # a name without an answer, after this long
        self._lookup = lookup
        self._lock = threading.Lock()
        self._answers: dict[str, tuple[float, list[str]]] = {}  # host -> (monotonic time asked, IPs)
        self._asking: set[str] = set()

    def setTimeouts(self, cacheTime: float, failCacheTime: float) -> None:  # noqa: N802,N803 - PySyncObj's names
        self._refresh_s, self._retry_s = cacheTime, failCacheTime

    def setPreferredAddrFamily(self, preferredAddrFamily) -> None:  # noqa: N802,N803 - PySyncObj's names
        pass  # IPv4 first, as PySyncObj's default 'ipv4' (`lookup`)

    def resolve(self, host: str) -> str | None:
        """Any thread, never blocks: an IP of `host` from the last answer, or None (none yet)."""
        if _is_ip(host):
            return host
        now = time.monotonic()
        with self._lock:
            asked, ips = self._answers.get(host, (None, []))
            due = asked is None or now - asked >= (self._refresh_s if ips else self._retry_s)
            if due and host not in self._asking:
                self._asking.add(host)
                threading.Thread(target=self._ask, args=(host,), name=f"raftkv-dns-{host}", daemon=True).start()
        return random.choice(ips) if ips else None

    def prime(self, host: str) -> bool:
        """Main thread, before SyncObj binds: look `host` up now. Whether it resolved."""
        if _is_ip(host):
            return True
        self._ask(host)
        return bool(self._answers[host][1])

    def _ask(self, host: str) -> None:
        ips = self._lookup(host)
        with self._lock:
            _, before = self._answers.get(host, (None, []))
            if not ips and before:
                ips = before  # keep the last answer through a DNS hiccup; the link's own errors tell the rest
            if not ips:
                log.debug("raft: host %s does not resolve yet", host)
            elif ips != before:
                log.info("raft: host %s resolves to %s", host, ",".join(ips))
            self._answers[host] = (time.monotonic(), ips)
            self._asking.discard(host)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def install() -> BackgroundResolver:
    """Make PySyncObj look names up through a BackgroundResolver (idempotent; for the whole process)."""
    current = _pysyncobj_dns._g_resolver
    if isinstance(current, BackgroundResolver):
        return current
    resolver = BackgroundResolver()
    _pysyncobj_dns._g_resolver = resolver
    return resolver


def installed() -> bool:
    return isinstance(_pysyncobj_dns._g_resolver, BackgroundResolver)
