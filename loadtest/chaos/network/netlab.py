"""A network-partition lab: each node of a local cluster in its own network namespace, links cut with nftables.

Topology (all of it private to this machine, no sysctl is touched):

    root namespace                 hub namespace                  node namespaces
    rkv<id>-up 10.213.X.254  <-veth->  uplink ─┐
                                              bridge ─ p1 <-veth-> eth0 10.213.X.1  (rkv<id>-n1)
                                                     ─ p2 <-veth-> eth0 10.213.X.2  (rkv<id>-n2) ...

The bridge lives in its own "hub" namespace rather than in the root one so that node-to-node frames never cross
the host's firewall (with br_netfilter loaded, a host whose FORWARD policy is DROP, e.g. a Docker host, would
otherwise silently partition every node). The root namespace (the chaos tool and its workload client) reaches
every node directly through its `rkv<id>-up` address; no namespace has a default route, so nothing leaves the lab.

A cut is a pair of DROP rules (input and output) in a dedicated nft table inside each of the two nodes'
namespaces: packets vanish silently, as in a real partition, and healing is flushing those tables. The client's
address is never cut, so `isolate(leader)` leaves clients talking to the old leader.

Everything is removed on exit, on Ctrl-C, on SIGTERM/SIGHUP and at interpreter exit; a lab left behind by a
SIGKILLed process is removed by the next lab (its owner's pid is recorded in the alias of its `rkv<id>-up` link).
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import hashlib
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterable


def _setns(fd: int) -> None:
    """setns(2) into a network namespace (os.setns arrived only in Python 3.12)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


TABLE = "raftkv_netlab"  # the nft table (family inet) holding a node's cuts
MARK = "raftkv-netlab owner="  # alias of the root-side link: who owns the lab
HUB = "hub"  # namespace suffix of the bridge; not a valid node name
NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,40}")
RUN_ID_RE = re.compile(r"[a-z0-9]{1,8}")  # "rkv" + 8 + "-up" fits the 15-byte interface name limit


class NetLabError(RuntimeError):
    pass


def _run(argv: list[str], input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise NetLabError(f"`{' '.join(argv)}` failed (exit {r.returncode}): {r.stderr.strip()}")
    return r


@functools.cache
def available() -> tuple[bool, str]:
    """(True, "") if labs can be built here, else (False, a one-line reason). Probes in a throwaway namespace."""
    if not sys.platform.startswith("linux"):
        return False, "needs Linux"
    if os.geteuid() != 0:
        return False, "needs root"
    for tool, package in (("ip", "iproute2"), ("nft", "nftables")):
        if shutil.which(tool) is None:
            return False, f"{tool} not installed (apt-get install {package})"
    probe = f"rkvprobe{os.getpid()}"
    steps = [
        ("cannot create network namespaces", ["ip", "netns", "add", probe]),
        ("kernel lacks veth", ["ip", "-n", probe, "link", "add", "name", "a", "type", "veth", "peer", "name", "b"]),
        ("kernel lacks bridge", ["ip", "-n", probe, "link", "add", "name", "b0", "type", "bridge"]),
        ("nftables unusable", ["ip", "netns", "exec", probe, "nft", "add", "table", "inet", TABLE]),
    ]
    try:
        for reason, argv in steps:
            r = _run(argv, check=False)
            if r.returncode != 0:
                return False, f"{reason}: {r.stderr.strip()}"
        return True, ""
    finally:
        _run(["ip", "netns", "del", probe], check=False)


# --- ownership: a lab is garbage once the process that made it is gone ------------------------------------------

def _process_token(pid: int) -> str | None:
    """pid:start-time, so a recycled pid does not pass for the owner."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return f"{pid}:{fields[19]}"  # field 22 of stat, counted from after the command name


def _owner_alive(token: str) -> bool:
    pid, _, _ = token.partition(":")
    return pid.isdigit() and _process_token(int(pid)) == token


def _namespaces() -> list[str]:
    return [line.split()[0] for line in _run(["ip", "netns", "list"]).stdout.splitlines() if line.strip()]


def _owners() -> dict[str, str]:
    """run id -> owner token, for every lab whose root-side link still exists."""
    owners = {}
    for link in json.loads(_run(["ip", "-j", "link", "show"]).stdout or "[]"):
        m = re.fullmatch(r"rkv([a-z0-9]{1,8})-up", link.get("ifname", ""))
        alias = link.get("ifalias", "")
        if m and alias.startswith(MARK):
            owners[m[1]] = alias[len(MARK):]
    return owners


def _destroy(run_id: str) -> None:
    """Remove every namespace and link of lab `run_id`, killing what still runs inside. Idempotent."""
    prefix = f"rkv{run_id}-"
    for ns in _namespaces():
        if not ns.startswith(prefix):
            continue
        # A process left inside would keep the namespace (and its links) alive after its name is gone.
        for pid in _run(["ip", "netns", "pids", ns], check=False).stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        _run(["ip", "netns", "del", ns], check=False)
    # Last, so an interrupted teardown still leaves the owner mark for the next sweep. Deleting one end of a
    # veth deletes both; namespaces are freed asynchronously, so this may already be gone.
    _run(["ip", "link", "del", "dev", f"{prefix}up"], check=False)
    left = [ns for ns in _namespaces() if ns.startswith(prefix)]
    if left:
        raise NetLabError(f"could not remove namespaces {left}")


def _sweep(run_id: str) -> None:
    """Remove labs whose owner died (any run id), and anything of `run_id` unless a live process owns it."""
    owners = _owners()
    for rid in sorted(set(owners) | {run_id}):
        owner = owners.get(rid)
        if owner and _owner_alive(owner):
            if rid == run_id:
                raise NetLabError(f"lab rkv{rid} is in use by live process {owner.partition(':')[0]}")
            continue
        _destroy(rid)


def _free_subnet(run_id: str) -> ipaddress.IPv4Network:
    """A 10.213.X.0/24 overlapping no route of the root namespace (nor a running lab, whose uplink is routed)."""
    used = []
    for route in json.loads(_run(["ip", "-j", "-4", "route", "show", "table", "all"]).stdout or "[]"):
        try:
            used.append(ipaddress.ip_network(route.get("dst", ""), strict=False))
        except ValueError:
            pass  # "default" and friends: a default route does not make a private /24 unreachable
    start = int(hashlib.sha1(run_id.encode()).hexdigest(), 16) % 256
    for i in range(256):
        net = ipaddress.ip_network(f"10.213.{(start + i) % 256}.0/24")
        if not any(net.overlaps(u) for u in used):
            return net
    raise NetLabError("no free 10.213.X.0/24 subnet")


# --- cleanup on signals and exit ----------------------------------------------------------------------------------

_LIVE: set[NetLab] = set()
_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_lock = threading.RLock()


def _cleanup_all() -> None:
    for lab in list(_LIVE):
        lab._teardown()


def _on_signal(signum, frame) -> None:
    try:
        _cleanup_all()
    finally:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)  # then die of the signal, as the process would have without the lab


def _track(lab: NetLab) -> None:
    with _lock:
        if not _LIVE:
            # SIGINT normally raises KeyboardInterrupt and the `with` block cleans up; these cover signals that
            # would kill the process without unwinding. Handlers the application installed are left alone.
            if threading.current_thread() is threading.main_thread():
                for sig in _SIGNALS:
                    if signal.getsignal(sig) == signal.SIG_DFL:
                        signal.signal(sig, _on_signal)
        _LIVE.add(lab)


def _untrack(lab: NetLab) -> None:
    with _lock:
        _LIVE.discard(lab)
        if not _LIVE and threading.current_thread() is threading.main_thread():
            for sig in _SIGNALS:
                if signal.getsignal(sig) is _on_signal:
                    signal.signal(sig, signal.SIG_DFL)


atexit.register(_cleanup_all)


# --- the lab --------------------------------------------------------------------------------------------------------

class NetLab:
    """`with NetLab(["n1", "n2", "n3"]) as lab:` one namespace per name; see the module docstring."""

    def __init__(self, names: list[str], run_id: str | None = None) -> None:
        if len(set(names)) != len(names) or not 1 <= len(names) <= 250:
            raise ValueError(f"need 1..250 distinct names, got {names}")
        for name in names:
            if not NAME_RE.fullmatch(name) or name == HUB:
                raise ValueError(f"bad node name {name!r}")
        self.run_id = run_id or secrets.token_hex(3)
        if not RUN_ID_RE.fullmatch(self.run_id):
            raise ValueError(f"run_id must match {RUN_ID_RE.pattern}, got {self.run_id!r}")
        self.names = list(names)
        self.prefix = f"rkv{self.run_id}-"  # of every namespace and root-namespace link of the lab
        self.subnet: ipaddress.IPv4Network | None = None
        self._cuts: set[frozenset[str]] = set()
        self._owner_pid = os.getpid()

    # lifecycle

    def __enter__(self) -> NetLab:
        ok, why = available()
        if not ok:
            raise NetLabError(f"network lab unavailable: {why}")
        _sweep(self.run_id)
        _track(self)  # before building, so a signal mid-way still cleans up
        try:
            self._build()
        except BaseException:
            self._teardown()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._teardown()

    def _build(self) -> None:
        self.subnet = _free_subnet(self.run_id)
        hub, up = self.namespace(HUB), f"{self.prefix}up"
        hub_ip = ["ip", "-n", hub]
        _run(["ip", "netns", "add", hub])
        _run(["ip", "link", "add", "name", up, "type", "veth", "peer", "name", "uplink", "netns", hub])
        token = _process_token(os.getpid())
        _run(["ip", "link", "set", "dev", up, "alias", f"{MARK}{token}"])
        # Always "name X"/"dev X": ip parses a bare "br" or "up" as a keyword.
        _run([*hub_ip, "link", "add", "name", "br0", "type", "bridge"])
        _run([*hub_ip, "link", "set", "dev", "br0", "up"])
        _run([*hub_ip, "link", "set", "dev", "uplink", "master", "br0", "up"])
        _run(["ip", "addr", "add", f"{self.client_address}/24", "dev", up])
        _run(["ip", "link", "set", "dev", up, "up"])
        for i, name in enumerate(self.names):
            ns = self.namespace(name)
            _run(["ip", "netns", "add", ns])
            _run([*hub_ip, "link", "add", "name", f"p{i}", "type", "veth", "peer", "name", "eth0", "netns", ns])
            _run([*hub_ip, "link", "set", "dev", f"p{i}", "master", "br0", "up"])
            _run(["ip", "-n", ns, "addr", "add", f"{self.address(name)}/24", "dev", "eth0"])
            _run(["ip", "-n", ns, "link", "set", "dev", "eth0", "up"])
            _run(["ip", "-n", ns, "link", "set", "dev", "lo", "up"])
            self._nft(name, f"table inet {TABLE} {{\n"
                            "  chain input { type filter hook input priority filter; policy accept; }\n"
                            "  chain output { type filter hook output priority filter; policy accept; }\n"
                            "}\n")

    def _teardown(self) -> None:
        if os.getpid() != self._owner_pid:
            return  # a forked child must not destroy its parent's lab
        try:
            _destroy(self.run_id)
        finally:
            self._cuts.clear()
            _untrack(self)

    # addresses and processes

    def namespace(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def address(self, name: str) -> str:
        """The node's IP; bind its servers here."""
        return str(self._net()[self._index(name) + 1])

    @property
    def client_address(self) -> str:
        """The root namespace's address in the lab (the source of client traffic); never cut."""
        return str(self._net()[254])

    def listen_socket(self, name: str, port: int) -> socket.socket:
        """A TCP socket listening on the node's address inside its namespace, for the relay:
        it then receives connections from the peers' own addresses, which the cuts match.
        setns() moves only the calling thread, so a short-lived thread does it."""
        result: list = []

        def inside() -> None:
            try:
                with open(f"/run/netns/{self.namespace(name)}") as ns:
                    _setns(ns.fileno())
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((self.address(name), port))
                sock.listen(128)
                sock.setblocking(False)
                result.append(sock)
            except OSError as exc:
                result.append(exc)

        t = threading.Thread(target=inside)
        t.start()
        t.join()
        if isinstance(result[0], OSError):
            raise NetLabError(f"cannot listen in {self.namespace(name)} on port {port}: {result[0]}")
        return result[0]

    def wrap(self, name: str, argv: list[str]) -> list[str]:
        """argv run inside the node's namespace. `ip netns exec` execs argv, so the Popen pid is argv's own."""
        self._index(name)
        return ["ip", "netns", "exec", self.namespace(name), *argv]

    # faults

    def cut(self, a: str, b: str) -> None:
        """Drop all traffic between a and b, both directions."""
        self._cut_pairs([(a, b)])

    def isolate(self, a: str) -> None:
        """Cut a from every other node; the root namespace's client still reaches it."""
        self._cut_pairs([(a, b) for b in self.names if b != a])

    def split(self, group1: Iterable[str], group2: Iterable[str]) -> None:
        """Cut every pair across the groups."""
        g1, g2 = list(group1), list(group2)
        if set(g1) & set(g2):
            raise ValueError(f"groups overlap: {set(g1) & set(g2)}")
        self._cut_pairs([(a, b) for a in g1 for b in g2])

    def heal(self) -> None:
        """Remove every cut."""
        for name in self.names:
            _run(self.wrap(name, ["nft", "flush", "table", "inet", TABLE]))
        self._cuts.clear()

    def cuts(self) -> set[frozenset[str]]:
        return set(self._cuts)

    # internals

    def _cut_pairs(self, pairs: list[tuple[str, str]]) -> None:
        rules: dict[str, list[str]] = {}  # one nft run per namespace, applied atomically
        for a, b in pairs:
            if a == b:
                raise ValueError(f"cannot cut {a} from itself")
            self._index(a), self._index(b)
            if frozenset((a, b)) in self._cuts:
                continue
            # Rules on both sides: each node's table then shows every peer it is cut from.
            for me, other in ((a, b), (b, a)):
                ip = self.address(other)
                rules.setdefault(me, []).extend([f"add rule inet {TABLE} input ip saddr {ip} drop",
                                                 f"add rule inet {TABLE} output ip daddr {ip} drop"])
        for name, lines in rules.items():
            self._nft(name, "\n".join(lines) + "\n")
        self._cuts.update(frozenset(p) for p in pairs)

    def _nft(self, name: str, script: str) -> None:
        _run(self.wrap(name, ["nft", "-f", "-"]), input=script)

    def _index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"{name!r} is not a node of this lab ({self.names})") from None

    def _net(self) -> ipaddress.IPv4Network:
        if self.subnet is None:
            raise NetLabError("the lab is not built: use it inside `with`")
        return self.subnet
