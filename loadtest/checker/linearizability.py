"""A linearizability checker for per-key histories of reads, writes and check-and-sets.

Operations whose outcome is unknown (timeouts, "outcome unknown") have no return time: they
may take effect at any point after their invocation, or never. Operations that certainly
failed must be left out of the history by the caller. Model: one register per key holding a
value (None = absent); values written should be unique per key, so that a check-and-set's
expected ModifyIndex can be given as the value it names.

The search walks the history's events in time order, carrying the exact set of possible
configurations: (register value, which in-flight completed operations are already linearized,
which unknown operations are still pending, how many "junk writes" are in hand). An operation
is linearized only when its return forces it ("just in time", as in Lowe's checker), preceded
by any order of other pending operations; any linearization can be cut this way, so nothing is
lost. Every event is thus a cut: quiescent points (nothing completed in flight) are the special
case where only unknown operations carry over, and histories with no quiescent point at all
(clients issuing back to back) cost no more. Linearizable iff a configuration survives the end.

Why the set stays small, each rule exact (it neither adds nor removes a possible outcome):
* A read is linearized as soon as the register holds its value, a refused CAS as soon as it
  does not hold the expected value: that changes nothing and only drops an obligation. (It is
  also an invariant the search relies on: a read is otherwise linearized only when a step makes
  the register take its value.)
* A value is dead once no completed operation still to return reads or expects it, nor
  observes a value an unknown CAS could turn it into. Dead values are indistinguishable (every
  read and every CAS expecting them fails alike; an unknown CAS can only turn one into another)
  so all become one value, JUNK, and an unknown CAS expecting a dead value is dropped.
* An unknown write of a dead value cannot be dropped: taking effect just before a refused CAS
  it explains the refusal, and it hides the previous value until the next write. But such
  writes are interchangeable, so a configuration counts them instead of naming them.
* An unknown operation may never take effect, so a configuration whose pending unknown
  operations include another's, with as many junk writes, the same value and the same known
  obligations, can do all the other can: the other is dropped.
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

    def __str__(self) -> str:
        ret = "?" if self.unknown else f"{self.ret:.4f}"
        return (f"{self.client} {self.kind} {self.value!r} exp={self.expected!r} ok={self.ok} "
                f"[{self.call:.4f}, {ret}]")


class _Junk:
    def __repr__(self) -> str:
        return "<unobservable>"


JUNK = _Junk()  # stands for any value no remaining operation can observe


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
    longest_prefix: int = 0  # completed operations verified before the failure (all of them if ok)
    explored: int = 0  # search states generated, in all
    witness: list[Operation] = field(default_factory=list)
    inconclusive: bool = False  # the search gave up (too many states): neither proof nor violation
    failed_at: Operation | None = None  # the operation whose return no configuration could explain
    window: tuple[float, float] | None = None  # quiescent window holding the failure (or the give-up)
    windows: int = 0  # quiescent windows in the history (diagnostics)
    peak_states: int = 0  # most configurations carried across one event
    reason: str = ""

    def __str__(self) -> str:
        if self.inconclusive:
            return (f"{self.key}: INCONCLUSIVE after {self.explored} states ({self.operations} ops): "
                    f"{self.reason}")
        if self.ok:
            return (f"{self.key}: linearizable ({self.operations} ops, {self.windows} quiescent windows, "
                    f"{self.explored} states explored, at most {self.peak_states} carried)")
        ops = "\n  ".join(str(o) for o in self.witness)
        lo, hi = self.window or (0.0, 0.0)
        return (f"{self.key}: NOT linearizable: no order fits the return of {self.failed_at} after "
                f"{self.longest_prefix} completed ops verified; it lies in the quiescent window "
                f"[{lo:.4f}, {hi:.4f}]. Operations around it:\n  {ops}")


def check_key(ops: list[Operation], initial=None, max_states: int = 1_000_000) -> Verdict:
    """Exact check of one key's history. `max_states` bounds the configurations carried across
    an event and those explored while processing one event; beyond it: inconclusive."""
    ops = sorted(ops, key=lambda o: o.call)
    n, key = len(ops), ops[0].key if ops else ""
    hist = [o for o in ops if not (o.unknown and o.kind == READ)]  # an unanswered read constrains nothing
    # Events in time order, invocations before returns at equal times (so they overlap).
    events = sorted([(o.call, 0, i) for i, o in enumerate(hist)]
                    + [(max(o.ret, o.call), 1, i) for i, o in enumerate(hist) if not o.unknown])
    ret_event = {i: e for e, (_, kind, i) in enumerate(events) if kind}

    # When each value stops being observable: after the return of the last completed operation
    # that reads or expects it, or that observes a value an unknown CAS could turn it into
    # (a fixpoint over the unknown CASes' edges expected -> value). Never referenced: at once.
    dead_after: dict = {}
    for i, o in enumerate(hist):
        if not o.unknown and o.kind != WRITE:
            ref = o.value if o.kind == READ else o.expected
            dead_after[ref] = max(dead_after.get(ref, -1), ret_event[i])
    edges = [(o.expected, o.value) for o in hist if o.unknown and o.kind == CAS]
    changed = True
    while changed:
        changed = False
        for exp, val in edges:
            if dead_after.get(val, -1) > dead_after.get(exp, -1):
                dead_after[exp], changed = dead_after[val], True
    goes_dead: dict[int, list] = {}
    for v, e in dead_after.items():
        goes_dead.setdefault(e, []).append(v)

    # An unknown write whose value is dead is a junk write; an unknown CAS whose expected value is
    # dead can no longer fire (the register never holds that value again, in canonical terms:
    # from a dead value it could only reach another dead one) and is dropped. Until then, each
    # unknown operation has a bit in the configurations' `pending` mask.
    unknown_bit: dict[int, int] = {}
    unknown_ops: list[Operation] = []
    junk_writes: set[int] = set()  # unknown writes that are junk from their invocation on
    expiry: dict[int, tuple[int, int]] = {}  # event -> (bits turning into junk writes, bits dropped)
    unknown_writes, unknown_cas = 0, {}  # bits of unknown writes; expected value -> bits of unknown CASes
    inv_event = {i: e for e, (_, kind, i) in enumerate(events) if not kind}
    for i, o in enumerate(hist):
        if o.unknown:
            dead = dead_after.get(o.value if o.kind == WRITE else o.expected, -1)
            if dead < inv_event[i]:
                if o.kind == WRITE:
                    junk_writes.add(i)
                continue
            bit = unknown_bit[i] = 1 << len(unknown_ops)
            unknown_ops.append(o)
            junk, drop = expiry.get(dead, (0, 0))
            if o.kind == WRITE:
                unknown_writes |= bit
                expiry[dead] = (junk | bit, drop)
            else:
                unknown_cas[o.expected] = unknown_cas.get(o.expected, 0) | bit
                expiry[dead] = (junk, drop | bit)

    def canon(v, e):
        return JUNK if dead_after.get(v, -1) < e else v

    # Completed operations in flight hold a small slot; `known` masks are sets of slots.
    free_slots: list[int] = []
    slot_op: dict[int, Operation] = {}
    slot_bit: dict[int, int] = {}
    movers = 0  # slots of in-flight writes and CASes that may change the register
    reads: dict = {}  # value -> slots of in-flight reads of it
    refused, refused_all = {}, 0  # expected value -> slots of in-flight refused CASes; all of them

    def absorbed(v) -> int:
        """Slots of in-flight operations that may be linearized for free while holding v."""
        return reads.get(v, 0) | (refused_all & ~refused.get(v, 0))

    # A frontier: (value, known mask) -> antichain of (pending unknown bits, junk writes in hand).
    frontier: dict[tuple, list[tuple[int, int]]] = {(canon(initial, 0), 0): [(0, 0)]}
    explored = peak = done = 0

    def verdict(ok: bool, at: Operation | None = None, reason: str = "") -> Verdict:
        v = Verdict(ok, key, n, done, explored, windows=len(_quiescent_windows(hist)), peak_states=peak)
        if at is not None:
            v.failed_at, v.inconclusive, v.reason = (at if not reason else None), bool(reason), reason
            v.window, v.witness = _around(hist, at)
        return v

    for e, (_, is_ret, i) in enumerate(events):
        o = hist[i]
        if o.unknown:
            if i in unknown_bit:
                bit = unknown_bit[i]
                frontier = {g: [(up | bit, j) for up, j in lst] for g, lst in frontier.items()}
            elif i in junk_writes:
                frontier = {g: [(up, j + 1) for up, j in lst] for g, lst in frontier.items()}
            continue
        if not is_ret:  # invocation of a completed operation: give it a slot
            s = free_slots.pop() if free_slots else len(slot_op)
            b = slot_bit[i] = 1 << s
            slot_op[s] = o
            if o.kind == READ:
                reads[o.value] = reads.get(o.value, 0) | b
                frontier = {(v, k | b if v == o.value else k): lst for (v, k), lst in frontier.items()}
            elif o.kind == CAS and o.ok is False:
                refused[o.expected] = refused.get(o.expected, 0) | b
                refused_all |= b
                frontier = {(v, k | b if v != o.expected else k): lst for (v, k), lst in frontier.items()}
            else:
                movers |= b
            continue

        # Return of a completed operation: it must be linearized by now.
        b = slot_bit.pop(i)
        new: dict[tuple, list[tuple[int, int]]] = {}
        seen: set = set()
        stack = []
        for (v, k), lst in frontier.items():
            for up, j in lst:
                if k & b:
                    _add(new, v, k & ~b, up, j)
                else:
                    stack.append((v, k, up, j))
        # Depth first over orders of pending operations ending with o.
        while stack:
            v, k, up, j = stack.pop()
            explored += 1
            if len(seen) > max_states:
                return verdict(False, o, f"over {max_states} states explored at one event")
            succ = []
            m = movers & ~k
            while m:
                low = m & -m
                m ^= low
                valid, nv = _step(v, slot_op[low.bit_length() - 1])
                if valid:
                    nv = canon(nv, e)
                    succ.append((nv, k | low | absorbed(nv), up, j))
            # Unknown CASes that would fail change nothing (and may never fire): not worth trying.
            m = up & (unknown_writes | unknown_cas.get(v, 0))
            while m:
                low = m & -m
                m ^= low
                nv = canon(unknown_ops[low.bit_length() - 1].value, e)
                succ.append((nv, k | absorbed(nv), up & ~low, j))
            if j and v is not JUNK:
                succ.append((JUNK, k | absorbed(JUNK), up, j - 1))
            for c in succ:
                if c[1] & b:  # o is linearized: this order is done, the rest waits for later returns
                    _add(new, c[0], c[1] & ~b, c[2], c[3])
                elif c not in seen:
                    seen.add(c)
                    stack.append(c)

        s = b.bit_length() - 1
        del slot_op[s]
        free_slots.append(s)
        movers &= ~b
        refused_all &= ~b
        for d, v in ((reads, o.value), (refused, o.expected)):
            if d.get(v, 0) & b:
                d[v] &= ~b
                if not d[v]:
                    del d[v]
        # Values and unknown operations that no later operation can observe collapse into junk.
        if e in goes_dead:
            dead, (junk, drop) = set(goes_dead[e]), expiry.get(e, (0, 0))
            old, new = new, {}
            for (v, k), lst in old.items():
                for up, j in lst:
                    _add(new, *((JUNK, k | absorbed(JUNK)) if v in dead else (v, k)), up & ~junk & ~drop,
                         j + (up & junk).bit_count())
        if not new:
            return verdict(False, o)
        frontier, done = new, done + 1
        size = sum(len(lst) for lst in frontier.values())
        peak = max(peak, size)
        if size > max_states:
            return verdict(False, o, f"over {max_states} configurations carried")
    return verdict(True)


def _add(frontier: dict, v, k: int, up: int, j: int) -> None:
    """Add a configuration, keeping only those not dominated (same value and known mask, and
    pending unknown operations and junk writes that include another's)."""
    lst = frontier.get((v, k))
    if lst is None:
        frontier[(v, k)] = [(up, j)]
        return
    for u2, j2 in lst:
        if up & ~u2 == 0 and j <= j2:
            return
    lst[:] = [(u2, j2) for u2, j2 in lst if not (u2 & ~up == 0 and j2 <= j)]
    lst.append((up, j))


def _quiescent_windows(ops: list[Operation]) -> list[tuple[float, float]]:
    """Stretches between instants when no completed operation is in flight."""
    known = sorted((o for o in ops if not o.unknown), key=lambda o: o.call)
    windows: list[tuple[float, float]] = []
    for o in known:
        if windows and o.call <= windows[-1][1]:
            windows[-1] = (windows[-1][0], max(windows[-1][1], o.ret))
        else:
            windows.append((o.call, o.ret))
    return windows


def _around(ops: list[Operation], at: Operation) -> tuple[tuple[float, float], list[Operation]]:
    """The quiescent window holding `at`, and the operations overlapping it plus a few before."""
    window = next((w for w in _quiescent_windows(ops) if w[0] <= at.call <= w[1]), (at.call, at.ret))
    overlapping = [o for o in ops if o is not at and o.call <= at.ret
                   and (o.call >= window[0] if o.unknown else o.ret >= at.call)]
    before = [o for o in ops if o.ret < at.call and not o.unknown][-3:]
    return window, (before + [at] + overlapping)[:20]


def check_history(ops: list[Operation]) -> list[Verdict]:
    """Check each key's sub-history on its own (linearizability is compositional)."""
    by_key: dict[str, list[Operation]] = {}
    for op in ops:
        by_key.setdefault(op.key, []).append(op)
    return [check_key(key_ops) for _, key_ops in sorted(by_key.items())]
