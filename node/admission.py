"""When a node that may have forgotten something takes part in Raft again (node.membership).

* A **fresh** node (empty data folder, no `--join`) is admitted by `admit_fresh_node` (main
  thread, before serving): it listens to its peers' hellos until they confirm the cluster is
  new, or refuses to start with the one line that says what to do.
* A **quarantined** node (its journal lost synced entries) runs `QuarantineCure.check` on every
  tick until it holds again what it may have acknowledged; then it records "no vote" for the
  current term (it may have voted in it before) and votes again.
"""

from __future__ import annotations

import logging
import time

from node.addresses import NodeAddresses
from node.engine import DurableJournal, RaftEngine
from node.errors import StartupError
from node.membership import Quarantine, Standing, fresh_verdict

log = logging.getLogger(__name__)


def admit_fresh_node(engine: RaftEngine, addresses: NodeAddresses, standing: Standing, timeout_s: float) -> None:
    """Block until a fresh node may take part: its peers confirm the cluster is new. Raises
    StartupError with the one line to show otherwise."""
    if standing.accepting:
        return
    started = time.monotonic()
    next_report = started + 10
    while True:
        verdict, detail = fresh_verdict(addresses.raft, addresses.node_id, addresses.other_peers(),
                                        engine.hellos(), time.monotonic() - started)
        if verdict == "refuse":
            raise StartupError(detail)
        if verdict == "form":
            log.info("new cluster: %s", detail)
            # Should this node have voted before it lost its folder, it did so in a term no
            # higher than its peers have seen: it sits those terms out.
            seen = max((h.term for h in engine.hellos().values()), default=0)
            if seen > engine.term:
                engine.sit_out_terms_up_to(seen)
            standing.voting = standing.accepting = True
            standing.why = ""
            return
        if time.monotonic() >= next_report:
            log.info("new node: waiting for %s to say whether the cluster exists", detail)
            next_report += 10
        if time.monotonic() - started > timeout_s:
            raise StartupError(f"no answer from {detail} within {timeout_s:g}s")
        time.sleep(0.02)


class QuarantineCure:
    """Holds this node's quarantine (None once cured, or never quarantined)."""

    def __init__(self, quarantine: Quarantine | None, engine: RaftEngine, journal: DurableJournal,
                 standing: Standing) -> None:
        self.quarantine = quarantine
        self._engine = engine
        self._journal = journal
        self._standing = standing

    @property
    def active(self) -> bool:
        return self.quarantine is not None

    def check(self) -> None:
        """Tick callback while quarantined."""
        q = self.quarantine
        if q is None or self._standing.voting:
            return
        applied = self._engine.applied_index
        journal = self._journal
        if q.cured(applied, journal.entry_term(applied), journal.entry_term(q.high_index)):
            log.warning("quarantine over: applied index %d (term %s) from the leader; voting again",
                        applied, journal.entry_term(applied))
            self.quarantine = None
            # A node that lost its log (or its vote file) may have voted in this term already.
            self._engine.record_no_vote(self._engine.term)
            if not (self._standing.learner or self._standing.removed):
                self._standing.voting = True
                self._standing.why = ""
