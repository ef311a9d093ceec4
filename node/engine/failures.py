"""PySyncObj's FAIL_REASON codes, translated once into the node's errors (node.errors).

A callback of PySyncObj reports `(result, fail_reason)`; everything above the engine sees
`(result, None)` on success or `(None, error)` with one of our errors. Which codes mean
"never reached the log" and which mean "may still commit": node/engine/NOTES.md, "FAIL_REASON".
"""

from __future__ import annotations

from pysyncobj import FAIL_REASON

from node.errors import NoLeaderError, NotAppliedError, OutcomeUnknownError, RaftkvError

# Codes whose command certainly never reached the log.
_NOT_APPLIED = {
    FAIL_REASON.QUEUE_FULL: "the leader's queue is full",
    FAIL_REASON.MISSING_LEADER: "no leader",
    FAIL_REASON.DISCARDED: "overwritten by a new leader",
    FAIL_REASON.NOT_LEADER: "this node is no longer the leader",
    FAIL_REASON.REQUEST_DENIED: "refused by the leader",
}
# Codes whose command may or may not commit.
_UNKNOWN = (FAIL_REASON.LEADER_CHANGED, FAIL_REASON.UNKNOWN_OUTCOME)

SUCCESS = FAIL_REASON.SUCCESS
NOT_LEADER = FAIL_REASON.NOT_LEADER  # what a leader answers a forwarded command it will not take


def error_for(fail_reason: int) -> RaftkvError | None:
    """None for SUCCESS, else the error a caller sees (a new instance per call)."""
    if fail_reason == FAIL_REASON.SUCCESS:
        return None
    if fail_reason == FAIL_REASON.MISSING_LEADER:
        return NoLeaderError("no leader")
    if fail_reason in _NOT_APPLIED:
        return NotAppliedError(_NOT_APPLIED[fail_reason])
    # LEADER_CHANGED, UNKNOWN_OUTCOME, and any code a later release adds: the entry may still commit
    return OutcomeUnknownError("the leader changed while the write was in flight")
