"""What can go wrong with a proposal, in the node's words; `api.errors` maps it to HTTP."""


class RaftkvError(Exception):
    """Base of every error the node reports to its callers."""


class NoLeaderError(RaftkvError):
    """No leader is known (election in progress, or no quorum). Nothing was applied."""


class NotAppliedError(RaftkvError):
    """The write was refused before reaching the log; it changed nothing. Safe to retry."""


class OutcomeUnknownError(RaftkvError):
    """The write may or may not have been committed (timeout, leader change mid-flight)."""


class DiskFullError(RaftkvError):
    """This node's disk is full: it can store no log entry, so it takes no write and no read
    that needs a barrier (stale reads still work). Nothing was applied. HTTP 507."""


class ClusterDiskFullError(RaftkvError):
    """The cluster cannot commit: the leader's disk, or the disks of a majority, are full.
    Nothing was applied. HTTP 503."""


class StartupError(RaftkvError):
    """The node cannot start; the message is one line for the user."""


class MembershipBusyError(RaftkvError):
    """A membership change was refused because another one is still in flight."""


class NotReadyError(RaftkvError):
    """This node cannot answer yet (it is rebuilding its state from its peers); ask another."""
