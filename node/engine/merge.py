"""The leader appends the batches of writes queued in one tick as one log entry.

Every node batches its own writes into entries (node.proposer), and a follower forwards each of
its entries to the leader (PySyncObj's `apply_command`), which appended each as an entry of its
own. At 32 writers spread over three nodes that made about 5 writes an entry and 440 entries a
second, and each entry costs every node a journal record, an AppendEntries or its
acknowledgement, a commit computation and a callback: per entry, not per write. Here the leader's
tick appends every mergeable batch waiting in PySyncObj's queue as one entry: the ops of the
batches in queue order, in a payload of the one format (node.codec), which a node of an earlier
release applies as any batch.

Each caller still gets the results of its own ops. A merged entry's results are one per op, and
each batch's callback takes its slice (`part`: first op, count). A follower whose batch was merged
learns its slice from the leader's `apply_command_response` (field `part`) and gets its results
when it applies the entry itself, as PySyncObj arranges for every forwarded command. Only a
follower that says it can (`slices` in its `apply_command`: this release and later) has its batches
merged; an earlier release's would take the whole entry's results for its own.

NOTES.md, "Merged entries".
"""

from __future__ import annotations

from collections.abc import Callable

from pysyncobj import SyncObj

from node import codec
from node.engine import internals, wire

MAX_MERGED_BYTES = 1024 * 1024  # a merged entry stays small enough to ship whole (pieces start at 64 KiB)
MAX_MERGED_BATCHES = 64
MAX_SLICEABLE = 100_000  # forwarded commands remembered as sliceable: a bound, never reached in practice


def slice_of(callback: Callable[[object, int], None], first: int, count: int) -> Callable[[object, int], None]:
    """`callback` given only results[first:first + count] of a merged entry (errors pass through)."""
    def sliced(results, fail_reason):
        if type(results) is list:
            results = results[first:first + count]
        callback(results, fail_reason)
    return sliced


class EntryMerger:
    """Tick thread. Installed in place of PySyncObj's `_checkCommandsToApply` (internals.check_commands_with)."""

    def __init__(self, syncobj: SyncObj, send: Callable[[object, dict], object], disk_full: Callable[[], bool]) -> None:
        self._so = syncobj
        self._send = send  # the transport's send
        self._disk_full = disk_full
        # (Node, request_id) of forwarded commands whose follower takes its slice of a merged entry
        self.sliceable: set = set()
        self.entries_merged = 0  # entries that merged two batches or more
        self.batches_merged = 0  # the batches those entries carried

    def forwarded(self, node, message: dict) -> None:
        """A follower's `apply_command` arrived (before PySyncObj queues it)."""
        if message.get("slices") is True and "request_id" in message and len(self.sliceable) < MAX_SLICEABLE:
            self.sliceable.add((node, message["request_id"]))

    def check_commands(self, own: Callable[[], None]) -> None:
        so = self._so
        queue = internals.command_queue(so)
        if internals.is_leader(so):
            while len(queue) > 1 and not self._disk_full() and self._append_merged(queue):
                pass
        own()  # what was not merged: one entry each, as before
        if self.sliceable and (not queue or not internals.is_leader(so)):
            # Each forwarded command recorded was appended or answered (NOT_LEADER): commands
            # arrive in the poll, after this. Left queued without a leader, they go unmerged.
            self.sliceable.clear()

    def _append_merged(self, queue) -> bool:
        """Append the mergeable batches at the head of the queue as one entry; False if fewer than two."""
        taken: list[tuple[tuple, list]] = []  # ((command, callback), rows)
        size = 0
        while queue and len(taken) < MAX_MERGED_BATCHES:
            command, callback = item = queue[0]
            rows = self._rows(command, callback)
            if rows is None or (taken and size + len(command) > MAX_MERGED_BYTES):
                break
            queue.popleft()  # the tick thread is the only one that takes from the queue
            taken.append((item, rows))
            size += len(command)
        if len(taken) < 2:
            if taken:
                queue.appendleft(taken[0][0])  # nothing to merge it with: PySyncObj appends it alone
            return False
        command = wire.regular_command(codec.merged_payload([rows for _, rows in taken]))
        index, term = internals.append_as_leader(self._so, command)
        first = 0
        for (_, callback), rows in taken:
            if type(callback) is tuple:  # forwarded: the follower waits for this index itself
                self.sliceable.discard(callback)
                node, request_id = callback
                self._send(node, {"type": "apply_command_response", "request_id": request_id,
                                  "log_idx": index, "log_term": term, "part": [first, len(rows)]})
            else:
                internals.when_applied(self._so, index, term, slice_of(callback, first, len(rows)))
            first += len(rows)
        self.entries_merged += 1
        self.batches_merged += len(taken)
        internals.send_append_entries(self._so)
        return True

    def _rows(self, command, callback) -> list | None:
        """The ops of a queued command if it may join a merged entry, else None."""
        if callback is None or (type(callback) is tuple and callback not in self.sliceable):
            return None
        payload = wire.regular_payload(command) if type(command) is bytes else None
        return codec.mergeable_rows(payload) if payload is not None else None
