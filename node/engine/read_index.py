"""ReadIndex reads (Raft thesis §6.4): a linearizable read with no log entry and no fsync.

Leader: a read queues; a round starts at once (not at the next heartbeat): it records the
commit index C and sends every other voter a `raftkv_ri_ping` {term, seq}; each answers a
`raftkv_ri_pong` {seq, term: its current term}. Once a majority (this node included) answered
with this leader's term a ping of this round or a later one, no leader of a newer term was
elected before those answers (its voters would have a newer term), so C covers every write
acknowledged before the read arrived: the read waits until C is applied here and is answered.
One round serves every read queued before it started; reads that arrive during a round wait
for the next one, whose pings leave after they arrived. Rules that keep it safe:
* no round before the leader's election no-op (PySyncObj appends one, `__onBecomeLeader`) is
  committed: until then C may miss entries committed in earlier terms;
* an answer counts only with the round's term and a `seq` at least the round's: `seq` grows
  for the life of the process and starts at the wall clock in ns, so an answer to a ping sent
  before the round, before a reconnection or before a restart never counts;
* an answer carrying a newer term fails the round (this leader is deposed); so does losing
  leadership or the term changing; only voters' answers count (never a learner's);
* a round without a majority after RETRY_S starts again with new pings (a peer that dropped
  its connection, or answered before it heard of our term).
A paused (SIGSTOP) or cut-off old leader therefore never passes a read once a majority has
moved to a newer term: the majority answers with that term, or not at all.

Follower (`consistent` on a follower, etcd's follower read): it sends the leader a
`raftkv_ri_ask` {id, term: its current term} and the leader serves it as one of its reads,
answering `raftkv_ri_answer` {id, index} (or {id, error}); the follower waits until it has
applied that index and answers from its own store. The ask counts as the asker's pong: with 3
voters or fewer the leader and the asker are a majority, so an ask in the leader's term is
answered at once with the commit index, one round trip in all (`_ask_confirms`); with more
voters, or an ask of another term or from a learner, the ask waits for a round. Over the
Raft link rather than HTTP forwarding (api/forward.py): the link is open, authenticated and
ordered, and it costs one small frame each way instead of an HTTP request to parse and route
on the leader. An ask not answered within RETRY_S is sent again (the first answer counts); one
open when the leader changes fails at once; one never answered is dropped after ASK_FORGET_S
(the read itself has timed out on the event loop long before).

Everything here runs on PySyncObj's tick thread except `request`, which any thread calls; the
engine wakes the tick thread for it (`internals.wake`), so a read does not wait for a tick.
"""

from __future__ import annotations

import collections
import itertools
import time
from collections.abc import Callable

from pysyncobj import SyncObj

from node.engine import internals
from node.errors import NoLeaderError

PING, PONG, ASK, ANSWER = "raftkv_ri_ping", "raftkv_ri_pong", "raftkv_ri_ask", "raftkv_ri_answer"
MESSAGES = frozenset((PING, PONG, ASK, ANSWER))
RETRY_S = 0.1  # two heartbeats: a round not confirmed by then is sent again
ASK_FORGET_S = 30.0  # longer than any request deadline

OnRead = Callable[[Exception | None], None]  # None: the read may be answered from this node's store
Answer = Callable[[int | None, Exception | None], None]  # (read index, error), from the leader's round
Send = Callable[[object, dict], object]  # (link, message): the transport's send


class _Round:
    __slots__ = ("seq", "term", "index", "readers", "acks", "started")

    def __init__(self, seq: int, term: int, index: int, readers: list[Answer]) -> None:
        self.seq, self.term, self.index, self.readers = seq, term, index, readers
        self.acks: set = set()
        self.started = time.monotonic()


class ReadIndex:
    def __init__(self, syncobj: SyncObj, send: Send) -> None:
        self._so = syncobj
        self._send = send
        self._incoming: collections.deque[OnRead] = collections.deque()  # from any thread
        self._queued: list[Answer] = []  # leader: reads waiting for the next round
        self._round: _Round | None = None
        self._applying: list[tuple[int, OnRead]] = []  # read index known: waiting to apply it here
        self._asked: dict[int, list] = {}  # follower: id -> [read, leader link, asked at, last sent at]
        self._seq = itertools.count(time.time_ns())  # never reused, not even across a restart
        self._ask_ids = itertools.count(1)
        self.rounds = 0  # rounds started (a retry counts as one)
        self.confirmed = 0  # rounds a majority confirmed
        self.asks_at_once = 0  # followers' asks answered without a round (_ask_confirms)

    # -- any thread ----------------------------------------------------------------------------

    def request(self, on_read: OnRead) -> None:
        """Ask for a linearizable read: `on_read(None)` on the tick thread once this node has
        applied everything committed before the call, or `on_read(error)`."""
        self._incoming.append(on_read)
        internals.wake(self._so)

    # -- tick thread ---------------------------------------------------------------------------

    def tick(self) -> None:
        """Tick callback: take new reads, start or retry a round, answer what is applied."""
        so = self._so
        leading = internals.is_leader(so)
        while self._incoming:
            on_read = self._incoming.popleft()
            if leading:
                self._queued.append(self._local_answer(on_read))
            else:
                self._ask_leader(on_read)
        if not leading:
            if self._queued or self._round is not None:
                self._fail_round("this node stopped being the leader")
        else:
            round_ = self._round
            if round_ is not None and round_.term != so.raftCurrentTerm:
                self._fail_round("this node's term changed during the read")
            elif round_ is not None and time.monotonic() - round_.started > RETRY_S:
                self._queued = round_.readers + self._queued  # they arrived before a new round too
                self._round = None
            self._start_round()
        if self._asked:
            self._forget_asks()
        self._answer_applied()

    def on_message(self, link, message: dict) -> None:
        """A ReadIndex message from a peer (the transport hands them over, already checked to be
        plain values)."""
        kind = message["type"]
        so = self._so
        if kind == PING:
            self._send(link, {"type": PONG, "seq": message.get("seq"), "term": so.raftCurrentTerm})
        elif kind == PONG:
            self._on_pong(link, message)
        elif kind == ASK:
            ask_id = message.get("id")
            if not internals.is_leader(so):
                self._send(link, {"type": ANSWER, "id": ask_id, "error": "not the leader"})
            elif self._ask_confirms(link, message):
                self.asks_at_once += 1
                self._send(link, {"type": ANSWER, "id": ask_id, "index": so.raftCommitIndex})
            else:
                self._queued.append(self._remote_answer(link, ask_id))
                self._start_round()
        elif kind == ANSWER:
            ask_id = message.get("id")
            asked = self._asked.get(ask_id)  # type: ignore[arg-type]
            if asked is None or asked[1] != link:
                return  # timed out and forgotten, or not from whom we asked
            del self._asked[ask_id]  # type: ignore[arg-type]
            index = message.get("index")
            if type(index) is int:
                self._applying.append((index, asked[0]))
                self._answer_applied()
            else:
                asked[0](NoLeaderError(f"the leader refused the read: {message.get('error')}"))

    # -- the leader's rounds -------------------------------------------------------------------

    def _start_round(self) -> None:
        so = self._so
        if self._round is not None or not self._queued or not internals.is_leader(so):
            return
        noop = internals.leader_noop_index(so)
        if noop is None or so.raftCommitIndex < noop:
            return  # retried every tick until this term's no-op commits (the reads' own deadlines bound it)
        readers, self._queued = self._queued, []
        round_ = self._round = _Round(next(self._seq), so.raftCurrentTerm, so.raftCommitIndex, readers)
        self.rounds += 1
        ping = {"type": PING, "term": round_.term, "seq": round_.seq}
        for link in list(internals.other_voters(so)):
            self._send(link, ping)  # a no-op on a link that is down; the retry sends again
        self._confirm_if_majority()

    def _on_pong(self, link, message: dict) -> None:
        round_, so = self._round, self._so
        term, seq = message.get("term"), message.get("seq")
        if round_ is None or type(term) is not int or type(seq) is not int:
            return
        if term > round_.term:
            self._fail_round(f"a peer is in a newer term ({term}): this node is no longer the leader")
            return
        if term == round_.term == so.raftCurrentTerm and seq >= round_.seq and link in internals.other_voters(so):
            round_.acks.add(link)
            self._confirm_if_majority()

    def _ask_confirms(self, link, message: dict) -> bool:
        """An ask is itself a pong: the voter sent it after its read arrived, in the term it
        carries. If that is this leader's term and this leader and the asker are a majority
        (3 voters or fewer), no leader of a newer term can have been elected before the read
        arrived (its voters would include one of the two, whose term was still ours after it):
        the commit index now covers every write acknowledged before the read, without a round."""
        so = self._so
        voters = internals.other_voters(so)
        noop = internals.leader_noop_index(so)
        term = message.get("term")
        return (type(term) is int and term == so.raftCurrentTerm
                and link in voters and (1 + 1) * 2 > len(voters) + 1
                and noop is not None and so.raftCommitIndex >= noop)

    def _confirm_if_majority(self) -> None:
        round_, so = self._round, self._so
        if round_ is None or not internals.is_leader(so) or round_.term != so.raftCurrentTerm:
            return
        voters = internals.other_voters(so)
        if (1 + len(round_.acks & voters)) * 2 <= len(voters) + 1:
            return
        self._round = None
        self.confirmed += 1
        for answer in round_.readers:
            answer(round_.index, None)
        self._start_round()  # the reads that queued meanwhile

    def _fail_round(self, reason: str) -> None:
        readers = self._queued + (self._round.readers if self._round is not None else [])
        self._queued, self._round = [], None
        error = NoLeaderError(reason)
        for answer in readers:
            answer(None, error)

    def _local_answer(self, on_read: OnRead) -> Answer:
        def answer(index: int | None, error: Exception | None) -> None:
            if error is not None or index is None:
                on_read(error)
            else:
                self._applying.append((index, on_read))
        return answer

    def _remote_answer(self, link, ask_id) -> Answer:
        def answer(index: int | None, error: Exception | None) -> None:
            if error is not None:
                self._send(link, {"type": ANSWER, "id": ask_id, "error": str(error)})
            else:
                self._send(link, {"type": ANSWER, "id": ask_id, "index": index})
        return answer

    # -- followers -----------------------------------------------------------------------------

    def _ask_leader(self, on_read: OnRead) -> None:
        leader = internals.last_known_leader(self._so)
        if leader is None:
            on_read(NoLeaderError("no leader is known"))
            return
        ask_id = next(self._ask_ids)
        now = time.monotonic()
        self._asked[ask_id] = [on_read, leader, now, now]
        self._send(leader, {"type": ASK, "id": ask_id, "term": self._so.raftCurrentTerm})

    def _forget_asks(self) -> None:
        """Fail the asks of a leader that is no longer ours; drop those never answered; ask again
        after RETRY_S (the link was down, or is new: a frame on the old one is lost)."""
        leader, now = internals.last_known_leader(self._so), time.monotonic()
        for ask_id, asked in list(self._asked.items()):
            on_read, link, when, sent = asked
            if link != leader:
                del self._asked[ask_id]
                on_read(NoLeaderError("the leader changed during the read"))
            elif now - when > ASK_FORGET_S:
                del self._asked[ask_id]
            elif now - sent > RETRY_S:
                asked[3] = now
                # the first answer counts, a later one is dropped
                self._send(link, {"type": ASK, "id": ask_id, "term": self._so.raftCurrentTerm})

    # -- both ----------------------------------------------------------------------------------

    def _answer_applied(self) -> None:
        if not self._applying:
            return
        applied = self._so.raftLastApplied
        waiting = []
        for index, on_read in self._applying:
            if applied >= index:
                on_read(None)
            else:
                waiting.append((index, on_read))
        self._applying = waiting
