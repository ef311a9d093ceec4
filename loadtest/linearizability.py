"""A linearizability checker for per-key histories of reads, writes and check-and-sets.

Wing & Gong's search with Lowe's memoisation (as in Porcupine): repeatedly pick an operation
that may take effect next (one invoked before every remaining operation has returned), apply
it to a sequential model of one register, and backtrack when the model disagrees with what
the system answered. Already-visited (set of linearized ops, model state) pairs are skipped.

Operations whose outcome is unknown (timeouts, "outcome unknown") have no return time: they
may take effect at any point after their invocation, or never. Operations that certainly
failed must be left out of the history by the caller.

Model: a register holding a value (None = absent). Values written must be unique per key,
so that a check-and-set's expected ModifyIndex can be given as the value it names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

READ, WRITE, CAS = "read", "write", "cas"


@dataclass
class Operation:
    kind: str  # read | write | cas
    key: str
    call: float  # invocation time (monotonic seconds)
    ret: float = math.inf  # completion time; inf when the outcome is unknown
    value: object = None  # read: value observed; write/cas: value written
    expected: object = None  # cas: value the key must hold (None: must be absent)
    ok: bool | None = None  # cas: True succeeded, False refused, None unknown
    client: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def unknown(self) -> bool:
        return self.ret == math.inf


def _step(state, op: Operation):
    """(valid, new state) for `op` applied to a register holding `state`."""
    if op.kind == READ:
        return state == op.value, state
    if op.kind == WRITE:
        return True, op.value
    matches = state == op.expected
    if op.ok is None:  # unknown outcome: a CAS is deterministic given the state
        return True, op.value if matches else state
    if op.ok:
        return matches, op.value
    return not matches, state


@dataclass
class Verdict:
    ok: bool
    key: str = ""
    operations: int = 0
    longest_prefix: int = 0  # most operations linearized on any path (diagnostics)
    explored: int = 0
    witness: list[Operation] = field(default_factory=list)
    inconclusive: bool = False  # the search gave up (too many states): neither proof nor violation

    def __str__(self) -> str:
        if self.inconclusive:
            return f"{self.key}: INCONCLUSIVE after {self.explored} states ({self.operations} ops)"
        if self.ok:
            return f"{self.key}: linearizable ({self.operations} ops, {self.explored} states explored)"
        ops = "\n  ".join(f"{o.client} {o.kind} {o.value!r} exp={o.expected!r} ok={o.ok} "
                          f"[{o.call:.4f}, {o.ret:.4f}]" for o in self.witness)
        return (f"{self.key}: NOT linearizable: no order fits {self.operations} ops; the longest "
                f"linearizable prefix has {self.longest_prefix}. Operations near the failure:\n  {ops}")


def check_key(ops: list[Operation], initial=None, max_states: int = 1_000_000) -> Verdict:
    ops = sorted(ops, key=lambda o: o.call)
    n = len(ops)
    key = ops[0].key if ops else ""
    known = [i for i in range(n) if not ops[i].unknown]  # in call order
    unknown = [i for i in range(n) if ops[i].unknown]  # few: scanned whole at every step
    by_ret = sorted(known, key=lambda i: ops[i].ret)
    seen: set[tuple[int, object]] = set()
    # A search node: (linearized mask, register state, first unlinearized position in `known`,
    # first unlinearized position in `by_ret`). Both positions only move forward down a path,
    # so finding the candidates costs the width of the concurrency window, not the history.
    stack = [(0, initial, 0, 0)]
    best, explored = 0, 0
    while stack:
        mask, state, lo, rp = stack.pop()
        while lo < len(known) and mask >> known[lo] & 1:
            lo += 1
        while rp < len(by_ret) and mask >> by_ret[rp] & 1:
            rp += 1
        if rp == len(by_ret):
            return Verdict(True, key, n, bin(mask).count("1"), explored)
        explored += 1
        if explored > max_states:
            return Verdict(False, key, n, best, explored, inconclusive=True)
        best = max(best, lo)
        min_ret = ops[by_ret[rp]].ret

        node = (mask, state, lo, rp)
        found_known = _successors((known[pos] for pos in range(lo, len(known))), ops, node, min_ret, seen)
        found_unknown = _successors(unknown, ops, node, min_ret, seen)
        # Depth first, completed operations first: an operation of unknown outcome most often
        # never took effect, so try the orders that leave it out before those that use it.
        stack.extend(reversed(found_unknown))
        stack.extend(reversed(found_known))
    stuck = known[best] if best < len(known) else 0
    witness = ops[max(0, stuck - 3): stuck + 5]
    return Verdict(False, key, n, best, explored, witness)


def _successors(candidates, ops: list[Operation], node: tuple, min_ret: float, seen: set) -> list:
    """Search nodes reached by linearizing one more of `candidates` (in call order) next."""
    mask, state, lo, rp = node
    found = []
    for i in candidates:
        if ops[i].call > min_ret:
            break
        if not mask >> i & 1:
            valid, new_state = _step(state, ops[i])
            if valid and (mask | 1 << i, new_state) not in seen:
                seen.add((mask | 1 << i, new_state))
                found.append((mask | 1 << i, new_state, lo, rp))
    return found


def check_history(ops: list[Operation]) -> list[Verdict]:
    """Check each key's sub-history on its own (linearizability is compositional)."""
    by_key: dict[str, list[Operation]] = {}
    for op in ops:
        by_key.setdefault(op.key, []).append(op)
    return [check_key(key_ops) for _, key_ops in sorted(by_key.items())]
