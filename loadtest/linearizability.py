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
    must = 0  # ops that must be linearized: every op that returned
    for i, op in enumerate(ops):
        if not op.unknown:
            must |= 1 << i
    seen: set[tuple[int, object]] = set()
    stack = [(0, initial)]
    best_mask, explored = 0, 0
    while stack:
        mask, state = stack.pop()
        if mask & must == must:
            return Verdict(True, key, n, bin(mask).count("1"), explored)
        explored += 1
        if explored > max_states:
            return Verdict(False, key, n, bin(best_mask).count("1"), explored, inconclusive=True)
        if bin(mask).count("1") > bin(best_mask).count("1"):
            best_mask = mask
        min_ret = min(ops[i].ret for i in range(n) if not mask >> i & 1)
        known, unknown = [], []
        for i in range(n):
            op = ops[i]
            if op.call > min_ret:
                break
            if mask >> i & 1:
                continue
            valid, new_state = _step(state, op)
            if valid:
                nxt = (mask | 1 << i, new_state)
                if nxt not in seen:
                    seen.add(nxt)
                    (unknown if op.unknown else known).append(nxt)
        # Depth first, completed operations first: an operation of unknown outcome most often
        # never took effect, so try the orders that leave it out before those that use it.
        stack.extend(reversed(unknown))
        stack.extend(reversed(known))
    first_stuck = next((i for i in range(n) if not best_mask >> i & 1), 0)
    witness = ops[max(0, first_stuck - 3): first_stuck + 5]
    return Verdict(False, key, n, bin(best_mask).count("1"), explored, witness)


def check_history(ops: list[Operation]) -> list[Verdict]:
    """Check each key's sub-history on its own (linearizability is compositional)."""
    by_key: dict[str, list[Operation]] = {}
    for op in ops:
        by_key.setdefault(op.key, []).append(op)
    return [check_key(key_ops) for _, key_ops in sorted(by_key.items())]
