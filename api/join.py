"""Joining a running cluster (`raftkv serve --join`) and leaving leadership before a stop.

Join: before the node starts, learn the cluster's voters from any member (the node's Raft
peers are those voters, not the command line's); once it runs as a learner, ask the leader
(through any member) to add it. The leader promotes it to voter when it has caught up
(node.raft.RaftNode.maintain_membership).

With TLS on, every call here is HTTPS with the node's peer context (api/tls.py): the member's
certificate is verified and the node presents its own.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request

import aiohttp

from api.addresses import AddressError, parse_hostport
from api.http_client import client_session

log = logging.getLogger(__name__)

HANDOVER_DRAIN_S = 2.0  # a stopping leader waits this long for its writes in flight
HANDOVER_WAIT_S = 3.0  # and this long for another voter to take over


class JoinError(Exception):
    """The cluster to join cannot be asked or refuses; one line for the user."""


def parse_join_urls(text: str, scheme: str = "http") -> list[str]:
    """`URL[,URL]`, each `SCHEME://HOST:PORT` or `HOST:PORT`, as `SCHEME://HOST:PORT`: the
    cluster's scheme is this node's own (https when it serves TLS), so another one is refused."""
    urls = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        given, sep, rest = item.partition("://")
        if sep and given != scheme:
            raise AddressError(f"--join {item!r}: this node serves {scheme}, and so does every member of its "
                               f"cluster; use {scheme}://HOST:PORT or HOST:PORT")
        # A member's name may resolve only later (a StatefulSet's pods): asked for JOIN_ASK_S.
        urls.append(f"{scheme}://" + parse_hostport((rest if sep else item).rstrip("/"), "--join", resolve=False))
    if not urls:
        raise AddressError("--join needs at least one member's HTTP address")
    return urls


JOIN_ASK_S = 30.0  # members may be starting too: ask again for this long before giving up


def voters_to_join(urls: list[str], addresses, timeout_s: float, peer_ssl: ssl.SSLContext | None = None,
                   headers: dict | None = None) -> list[str]:
    """The cluster's voters, from the first member that answers (asked again for JOIN_ASK_S);
    refuses a join under an address that is already a voter (that member must be removed first)."""
    deadline = time.monotonic() + JOIN_ASK_S
    while True:
        try:
            return _ask_voters(urls, addresses, timeout_s, peer_ssl, headers or {})
        except _NoAnswer as exc:
            if time.monotonic() > deadline:
                raise JoinError(str(exc)) from None
            time.sleep(0.5)


class _NoAnswer(Exception):
    pass


def _ask_voters(urls: list[str], addresses, timeout_s: float, peer_ssl: ssl.SSLContext | None,
                headers: dict) -> list[str]:
    problems = []
    for url in urls:
        try:
            req = urllib.request.Request(f"{url}/v1/operator/raft/configuration", headers=headers)
            with urllib.request.urlopen(req, timeout=timeout_s, context=peer_ssl) as resp:
                servers = json.loads(resp.read())["Servers"]
        except (urllib.error.URLError, OSError, ValueError, KeyError, TypeError) as exc:
            problems.append(f"{url}: {getattr(exc, 'reason', exc)}")
            continue
        voters = [s["Address"] for s in servers if s.get("Voter")]
        if addresses.raft in voters:
            raise JoinError(f"{addresses.raft} is already a voter of that cluster; remove it first "
                            f"(raftkv members remove {addresses.node_id}) to join again with an empty data folder")
        if not voters:
            problems.append(f"{url}: no voters in its configuration")
            continue
        return voters
    raise _NoAnswer("cannot learn the cluster's members: " + "; ".join(problems))


async def ask_to_join(node, urls: list[str], stop: asyncio.Event, peer_ssl: ssl.SSLContext | None = None,
                      headers: dict | None = None) -> None:
    """Ask until the cluster has this node as a learner or a voter (retries every second).
    `headers`: the node's own ACL token when ACLs are on (api/acl/initial.py)."""
    a = node.addresses
    query = urllib.parse.urlencode({"id": a.node_id, "address": a.raft, "http": a.http})
    last_problem = None
    async with _session(peer_ssl) as session:
        while not stop.is_set() and node.standing.learner:
            # Not this node's own replay of the configuration: that is the cluster's history, in
            # which an earlier node at this address may be a member (node.raft, _past_admission).
            if node.admitted:
                await asyncio.sleep(0.5)  # added; the leader promotes us once we have caught up
                continue
            for url in urls:
                try:
                    async with session.put(f"{url}/v1/operator/raft/peer?{query}", headers=headers,
                                           timeout=aiohttp.ClientTimeout(total=10)) as resp:
                        body = (await resp.text()).strip()
                        if resp.status == 200:
                            log.info("joined through %s as a learner; catching up", url)
                            break
                        problem = f"{url} answered {resp.status}: {body}"
                except (aiohttp.ClientError, TimeoutError) as exc:
                    problem = f"{url}: {type(exc).__name__}"
                if problem != last_problem:
                    log.warning("join: %s", problem)
                    last_problem = problem
            await asyncio.sleep(1.0)


async def removed_per_peers(node, peer_ssl: ssl.SSLContext | None = None, headers: dict | None = None) -> bool:
    """True when a member of our cluster shows a newer configuration without this node."""
    me = node.addresses.raft
    mine = node.configuration()
    scheme = "https" if peer_ssl else "http"
    async with _session(peer_ssl) as session:
        for raft, (_id, http) in mine["members"].items():
            if raft == me or not http:
                continue
            try:
                async with session.get(f"{scheme}://{http}/v1/operator/raft/configuration?stale", headers=headers,
                                       timeout=aiohttp.ClientTimeout(total=2)) as resp:
                    if resp.status != 200:
                        continue
                    doc = await resp.json()
            except (aiohttp.ClientError, TimeoutError, ValueError):
                continue
            addresses = {s.get("Address") for s in doc.get("Servers", [])}
            if me in addresses and doc.get("Index", 0) > 0:
                return False  # someone still has us: not removed (maybe partitioned)
            newer = doc.get("Index", 0) > mine["index"] and doc.get("ClusterID") == mine["cluster_id"]
            if newer and me not in addresses:
                return True
    return False


def _session(peer_ssl: ssl.SSLContext | None) -> aiohttp.ClientSession:
    return client_session(connector=aiohttp.TCPConnector(ssl=peer_ssl or True))


async def hand_over_leadership(node) -> None:
    """A stopping leader: let its writes in flight finish, then hand leadership to the most
    caught-up voter, so clients see a hand-over instead of an election timeout."""
    from api.operator import transfer  # the one transfer loop, shared with the operator API

    node.stop_taking_requests()
    down = set(node.unreachable_peers())
    if not [v for v in node.peers() if v != node.addresses.raft and v not in down]:
        log.info("no other voter reachable: stopping without a leadership hand-over")
        return
    started = time.monotonic()
    await node.drain_writes(HANDOVER_DRAIN_S)
    drained = time.monotonic()
    try:
        leader = await asyncio.wait_for(transfer(node, None), HANDOVER_WAIT_S)
        log.info("leadership handed over to %s in %.0f ms (%.0f ms draining writes in flight)", leader,
                 (time.monotonic() - started) * 1000, (drained - started) * 1000)
    except Exception as exc:  # noqa: BLE001 - the stop goes on; an election takes over instead
        log.warning("leadership hand-over failed (%s); the others will elect a leader", str(exc) or type(exc).__name__)
