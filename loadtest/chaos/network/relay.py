"""A TCP relay between raftkv nodes that adds latency, loss and partitions (no netem, no root).

Each node advertises a relay address (`--raft`) and binds a real one (`--raft-bind`); the relay
listens on every advertised address and forwards to the real one. PySyncObj opens one connection
per pair of nodes and the connecting node's first frame (4-byte native `int` length, then a
zlib-compressed pickle) is its own advertised address, so the relay decodes that frame to know
which link (pair of node addresses) a connection belongs to. Faults are set per link, both ways.
(With PySyncObj encryption the first frame is a key, not an address: such links count as "?" and
only `set_all` reaches them.)

* delay / jitter: every chunk read is delivered `delay_ms + uniform(0, jitter_ms)` later. Delivery
  times never go backwards within a stream, so bytes are never reordered.
* loss: TCP never loses bytes, it retransmits them. With probability `loss` a chunk is held back an
  extra retransmission timeout (`rto_ms`, 200 ms = the Linux minimum RTO) and, as in real TCP,
  everything behind it on the same connection waits too (head-of-line blocking).
* cut (`blackhole`): established connections go silent (data is held, as in a real partition,
  until PySyncObj's connection timeout closes them or the link heals); new connections on the link
  are accepted and closed at once.

The relay runs its own asyncio loop in its own thread, apart from any workload's loop; the fault
settings may be changed from any thread. Only loopback addresses are accepted, and addresses of
a network lab the caller created (`allowed`, with `listen` opening each listener inside its node's
namespace: loadtest.chaos.network.netlab.NetLab.listen_socket), so the lab's DROP rules still see the peer.
"""

from __future__ import annotations

import asyncio
import functools
import io
import ipaddress
import pickle
import random
import struct
import threading
import zlib
from dataclasses import dataclass

CHUNK = 64 * 1024
MAX_QUEUED_CHUNKS = 32  # per direction: at most 2 MiB held before reads pause (backpressure)
COUNTERS = ("connections", "refused", "chunks", "bytes", "retransmits")  # refused: accepted and closed (cut)


@dataclass(frozen=True)
class Fault:
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss: float = 0.0
    cut: bool = False


def link(a: str, b: str) -> tuple[str, str]:
    """The key of the link between two node addresses, whichever way round."""
    return (a, b) if a <= b else (b, a)


def _loopback(addr: str, allowed: ipaddress.IPv4Network | None = None) -> tuple[str, int]:
    host, port = addr.rsplit(":", 1)
    if host != "localhost":
        ip = ipaddress.ip_address(host)
        if not ip.is_loopback and (allowed is None or ip not in allowed):
            raise ValueError(f"relay: {addr} is neither loopback nor in the lab's network")
    return host, int(port)


class _NoGlobals(pickle.Unpickler):
    """An address is a str: a pickle naming any class or function is not one (nothing runs)."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"{module}.{name}")


def _peer_of(frame: bytes) -> str | None:
    """The address a PySyncObj node sends first on a connection it opens (None if not that)."""
    try:
        message = _NoGlobals(io.BytesIO(zlib.decompress(frame))).load()
    except Exception:
        return None
    return message if isinstance(message, str) else None


class Relay:
    """`Relay({advertised: real, ...})`: one listener per advertised address, forwarding to the real one."""

    def __init__(self, routes: dict[str, str], rto_ms: float = 200.0, allowed: ipaddress.IPv4Network | None = None,
                 listen=None) -> None:
        """`listen(advertised) -> socket`: a bound, listening socket (default: opened here)."""
        for addr in (*routes, *routes.values()):
            _loopback(addr, allowed)
        self.routes, self.rto_s = dict(routes), rto_ms / 1000
        self.allowed, self.listen = allowed, listen
        self._lock = threading.Lock()
        self._default, self._faults = Fault(), {}
        self._stats: dict[tuple[str, str], dict[str, int]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping, self._ready = asyncio.Event(), threading.Event()
        self._thread = threading.Thread(target=self._run, name="raftkv-relay", daemon=True)
        self._error: BaseException | None = None

    # ---- fault settings and counters (any thread) ----
    def set_link(self, a: str, b: str, delay_ms: float = 0, jitter_ms: float = 0, loss: float = 0.0,
                 cut: bool = False) -> None:
        with self._lock:
            self._faults[link(a, b)] = Fault(delay_ms, jitter_ms, loss, cut)

    def set_all(self, delay_ms: float = 0, jitter_ms: float = 0, loss: float = 0.0) -> None:
        """The same settings on every link, replacing any per-link ones (cuts included)."""
        with self._lock:
            self._default, self._faults = Fault(delay_ms, jitter_ms, loss), {}

    def clear(self) -> None:
        self.set_all()

    def blackhole(self, a: str, b: str) -> None:
        self.set_link(a, b, cut=True)

    def heal(self, a: str, b: str) -> None:
        """Back to the settings of every link (`set_all`)."""
        with self._lock:
            self._faults.pop(link(a, b), None)

    def isolate(self, node: str) -> None:
        """Cut every link of one node: a no-root partition of that node from all the others."""
        for other in self.routes.keys() - {node}:
            self.blackhole(node, other)

    def rejoin(self, node: str) -> None:
        for other in self.routes.keys() - {node}:
            self.heal(node, other)

    def fault(self, key: tuple[str, str]) -> Fault:
        with self._lock:
            return self._faults.get(key, self._default)

    def stats(self) -> dict[tuple[str, str], dict[str, int]]:
        """Per link (key `link(a, b)`, "?" for a peer that did not name itself): the COUNTERS."""
        with self._lock:
            return {key: dict(c) for key, c in self._stats.items()}

    def _count(self, key: tuple[str, str], **add: int) -> None:
        with self._lock:
            c = self._stats.setdefault(key, dict.fromkeys(COUNTERS, 0))
            for name, n in add.items():
                c[name] += n

    # ---- lifecycle ----
    def start(self) -> Relay:
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._thread.is_alive() and self._loop is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(10)

    def __enter__(self) -> Relay:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # a listener that cannot bind: raised by start()
            self._error = exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        tasks: set[asyncio.Task] = set()

        async def handle(advertised: str, real: str, r, w) -> None:
            tasks.add(task := asyncio.current_task())
            try:
                await self._connection(advertised, real, r, w)
            except asyncio.CancelledError:
                pass  # stop(): end quietly (Python 3.11's start_server logs a cancelled handler as an error)
            finally:
                tasks.discard(task)

        servers = []
        try:
            for adv, real in self.routes.items():
                if self.listen:
                    where = {"sock": self.listen(adv)}
                else:
                    host, port = _loopback(adv)
                    where = {"host": host, "port": port}
                servers.append(await asyncio.start_server(functools.partial(handle, adv, real), **where))
            self._ready.set()
            await self._stopping.wait()
        finally:
            for s in servers:
                s.close()
            await asyncio.sleep(0.05)  # connections accepted just now reach their handler, which closes them
            for t in list(tasks):
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for s in servers:
                await s.wait_closed()

    # ---- forwarding ----
    async def _connection(self, advertised: str, real: str, cr, cw) -> None:
        pipes: list[asyncio.Task] = []
        uw = None
        try:
            # The first frame names the connecting node; read it whole (it is tiny) before choosing.
            first, peer = await self._first_frame(cr)
            key = link(peer, advertised)
            if self.fault(key).cut:
                self._count(key, refused=1)
                return
            self._count(key, connections=1)
            ur, uw = await asyncio.wait_for(asyncio.open_connection(*_loopback(real, self.allowed)), 5)
            pipes = [asyncio.create_task(self._pipe(cr, uw, key, first)), asyncio.create_task(self._pipe(ur, cw, key))]
            # When either side closes (after its pending bytes are delivered), close the other.
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            pass  # a normal disconnect or an unreachable node: the peer just sees the close
        finally:  # nothing awaited before the closes: stop() may cancel us here too
            writers = [w for w in (cw, uw) if w is not None]
            for t in pipes:
                t.cancel()
            for w in writers:
                w.close()  # graceful: what the pipes wrote is still flushed...
            try:
                await asyncio.wait_for(asyncio.gather(*pipes, *(w.wait_closed() for w in writers),
                                                      return_exceptions=True), 1)
            except BaseException:  # ...unless a side stopped reading, or stop() came
                for w in writers:
                    w.transport.abort()

    @staticmethod
    async def _first_frame(r: asyncio.StreamReader) -> tuple[bytes, str]:
        """The bytes read first and the connecting node's address ("?" if not a PySyncObj node)."""
        first = b""
        try:
            first = await asyncio.wait_for(r.read(CHUNK), 2)
            n = struct.unpack("i", first[:4])[0] if len(first) >= 4 else 0
            if not 0 < n <= 4096:
                return first, "?"
            while len(first) < 4 + n:  # the frame is tiny and normally arrives whole
                if not (more := await asyncio.wait_for(r.read(CHUNK), 2)):
                    return first, "?"
                first += more
        except TimeoutError:  # e.g. a client that waits for the server to speak first: not PySyncObj
            return first, "?"
        return first, _peer_of(first[4:4 + n]) or "?"

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, key: tuple[str, str],
                    first: bytes = b"") -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue(MAX_QUEUED_CHUNKS)

        async def feed() -> None:
            last_due, pending = 0.0, first
            try:
                while data := pending or await src.read(CHUNK):
                    pending = b""
                    f = self.fault(key)
                    due = loop.time() + (f.delay_ms + random.uniform(0, f.jitter_ms)) / 1000
                    if f.loss and random.random() < f.loss:
                        due += self.rto_s
                        self._count(key, retransmits=1)
                    last_due = max(last_due, due)  # never overtake an earlier chunk
                    await queue.put((last_due, data))  # waits when full: reads pause
            except OSError:
                pass
            await queue.put(None)

        feeder = asyncio.create_task(feed())
        try:
            while (item := await queue.get()) is not None:
                due, data = item
                # Partitioned: hold everything, deliver in order once healed. The fault is set from
                # the experiment's thread, so it is looked at, not awaited.
                while self.fault(key).cut:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
                await asyncio.sleep(max(0.0, due - loop.time()))
                self._count(key, chunks=1, bytes=len(data))  # before the write: a reader never sees it uncounted
                dst.write(data)
                await dst.drain()
        except OSError:
            pass
        finally:
            feeder.cancel()
            await asyncio.gather(feeder, return_exceptions=True)
