"""A linearizability checker for per-key histories of reads, writes and check-and-sets
(the model, and what an unknown outcome means: history.py).

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

Representation: a configuration is the tuple (value, known, pending, junk_writes). `known` is
a bit mask of in-flight completed operations (one bit per slot, see _InFlight), `pending` one
of unknown operations (one bit each, see _UnknownOperations). A frontier maps (value, known) to
an antichain of (pending, junk_writes), none dominating another (_add_undominated).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from loadtest.checker.history import CAS, READ, WRITE, Operation, apply_to_register


class _Junk:
    def __repr__(self) -> str:
        return "<unobservable>"


JUNK = _Junk()  # stands for any value no remaining operation can observe


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


def check_history(ops: list[Operation]) -> list[Verdict]:
    """Check each key's sub-history on its own (linearizability is compositional)."""
    by_key: dict[str, list[Operation]] = {}
    for op in ops:
        by_key.setdefault(op.key, []).append(op)
    return [check_key(key_ops) for _, key_ops in sorted(by_key.items())]


def check_key(ops: list[Operation], initial=None, max_states: int = 1_000_000) -> Verdict:
    """Exact check of one key's history. `max_states` bounds the configurations carried across
    an event and those explored while processing one event; beyond it: inconclusive."""
    ops = sorted(ops, key=lambda o: o.call)
    history = [o for o in ops if not (o.unknown and o.kind == READ)]  # an unanswered read constrains nothing
    key = ops[0].key if ops else ""
    return _KeySearch(key, len(ops), history, initial, max_states).run()


@dataclass
class _Timeline:
    """The history's events in time order, invocations before returns at equal times (so that
    they overlap). An event is (time, is_return, index of the operation in the history)."""

    events: list[tuple[float, int, int]]
    invoked_at: dict[int, int]  # operation index -> event index of its invocation
    returned_at: dict[int, int]  # completed operation index -> event index of its return


def _timeline(history: list[Operation]) -> _Timeline:
    events = sorted([(o.call, 0, i) for i, o in enumerate(history)]
                    + [(max(o.ret, o.call), 1, i) for i, o in enumerate(history) if not o.unknown])
    return _Timeline(events,
                     invoked_at={i: e for e, (_, is_return, i) in enumerate(events) if not is_return},
                     returned_at={i: e for e, (_, is_return, i) in enumerate(events) if is_return})


class _ValueLifetimes:
    """When each value stops being observable: after the return of the last completed operation
    that reads or expects it, or that observes a value an unknown CAS could turn it into (a
    fixpoint over the unknown CASes' edges expected -> value). Never referenced: at once."""

    def __init__(self, history: list[Operation], timeline: _Timeline) -> None:
        self.last_observed: dict = {}  # value -> event index after which no operation observes it
        for i, op in enumerate(history):
            if not op.unknown and op.kind != WRITE:
                observed = op.value if op.kind == READ else op.expected
                self.last_observed[observed] = max(self.last_observed.get(observed, -1), timeline.returned_at[i])
        self._extend_through_unknown_cas(history)
        self.dying_at: dict[int, list] = {}  # event index -> values that are dead after it
        for value, event in self.last_observed.items():
            self.dying_at.setdefault(event, []).append(value)

    def _extend_through_unknown_cas(self, history: list[Operation]) -> None:
        """A value lives as long as any value an unknown CAS expecting it could write."""
        edges = [(o.expected, o.value) for o in history if o.unknown and o.kind == CAS]
        changed = True
        while changed:
            changed = False
            for expected, written in edges:
                if self.last_observed.get(written, -1) > self.last_observed.get(expected, -1):
                    self.last_observed[expected], changed = self.last_observed[written], True

    def last_observed_event(self, value) -> int:
        return self.last_observed.get(value, -1)

    def canonical(self, value, event: int):
        """`value` as the search carries it after `event`: JUNK once it is dead."""
        return JUNK if self.last_observed.get(value, -1) < event else value


class _UnknownOperations:
    """The unknown operations that can still matter, each with a bit in the configurations'
    `pending` mask. An unknown write whose value is dead is a junk write; an unknown CAS whose
    expected value is dead can no longer fire (the register never holds that value again, in
    canonical terms: from a dead value it could only reach another dead one) and is dropped."""

    def __init__(self, history: list[Operation], timeline: _Timeline, lifetimes: _ValueLifetimes) -> None:
        self.bit_of: dict[int, int] = {}  # operation index -> its bit in `pending`
        self.op_of_bit: dict[int, Operation] = {}  # the unknown operation of each bit
        self.junk_from_invocation: set[int] = set()  # indexes of unknown writes that are junk when invoked
        self.expiring_at: dict[int, tuple[int, int]] = {}  # event -> (bits becoming junk writes, bits dropped)
        self.write_bits = 0  # bits of the unknown writes
        self.cas_bits_expecting: dict = {}  # expected value -> bits of the unknown CASes
        for i, op in enumerate(history):
            if op.unknown:
                self._track(i, op, lifetimes.last_observed_event(op.value if op.kind == WRITE else op.expected),
                            timeline.invoked_at[i])

    def _track(self, index: int, op: Operation, dead_after: int, invoked_at: int) -> None:
        """Give `op` a bit until the event after which it can no longer matter, or none at all."""
        if dead_after < invoked_at:
            if op.kind == WRITE:
                self.junk_from_invocation.add(index)
            return
        bit = self.bit_of[index] = 1 << len(self.op_of_bit)
        self.op_of_bit[bit] = op
        becoming_junk, dropped = self.expiring_at.get(dead_after, (0, 0))
        if op.kind == WRITE:
            self.write_bits |= bit
            self.expiring_at[dead_after] = (becoming_junk | bit, dropped)
        else:
            self.cas_bits_expecting[op.expected] = self.cas_bits_expecting.get(op.expected, 0) | bit
            self.expiring_at[dead_after] = (becoming_junk, dropped | bit)


class _InFlight:
    """Completed operations between their invocation and their return. Each holds a small slot,
    reused once it returns; a configuration's `known` mask holds the bits of the slots whose
    operation it has already linearized."""

    def __init__(self) -> None:
        self._free_slots: list[int] = []
        self.op_of_bit: dict[int, Operation] = {}  # the operation in each taken slot, by the slot's bit
        self._bit_of: dict[int, int] = {}  # operation index -> its slot's bit
        self.movers = 0  # bits of in-flight writes and CASes that may change the register
        self._reads_of: dict = {}  # value -> bits of in-flight reads of it
        self._refused_expecting: dict = {}  # expected value -> bits of in-flight refused CASes
        self._refused_all = 0  # bits of all in-flight refused CASes

    def admit(self, index: int, op: Operation) -> int:
        """Give the invoked operation a slot; its bit."""
        slot = self._free_slots.pop() if self._free_slots else len(self.op_of_bit)
        bit = self._bit_of[index] = 1 << slot
        self.op_of_bit[bit] = op
        if op.kind == READ:
            self._reads_of[op.value] = self._reads_of.get(op.value, 0) | bit
        elif op.kind == CAS and op.ok is False:
            self._refused_expecting[op.expected] = self._refused_expecting.get(op.expected, 0) | bit
            self._refused_all |= bit
        else:
            self.movers |= bit
        return bit

    def returning(self, index: int) -> int:
        """The bit of the operation that returns (its slot stays taken until `release`)."""
        return self._bit_of.pop(index)

    def release(self, bit: int, op: Operation) -> None:
        del self.op_of_bit[bit]
        self._free_slots.append(bit.bit_length() - 1)
        self.movers &= ~bit
        self._refused_all &= ~bit
        for bits_by_value, value in ((self._reads_of, op.value), (self._refused_expecting, op.expected)):
            if bits_by_value.get(value, 0) & bit:
                bits_by_value[value] &= ~bit
                if not bits_by_value[value]:
                    del bits_by_value[value]

    def absorbed(self, value) -> int:
        """Bits of in-flight operations that may be linearized for free while holding `value`:
        reads of it, and refused CASes expecting another value."""
        return self._reads_of.get(value, 0) | (self._refused_all & ~self._refused_expecting.get(value, 0))


class _KeySearch:
    """The search over one key's history (module docstring): one pass over its events."""

    def __init__(self, key: str, operation_count: int, history: list[Operation], initial,
                 max_states: int) -> None:
        self.key, self.operation_count, self.history, self.max_states = key, operation_count, history, max_states
        self.timeline = _timeline(history)
        self.lifetimes = _ValueLifetimes(history, self.timeline)
        self.unknowns = _UnknownOperations(history, self.timeline, self.lifetimes)
        self.in_flight = _InFlight()
        self.successors = _successor_function(self.lifetimes, self.in_flight, self.unknowns)
        self.frontier: dict[tuple, list[tuple[int, int]]] = {(self.lifetimes.canonical(initial, 0), 0): [(0, 0)]}
        self.explored = 0  # configurations taken off the search stack, over all events
        self.peak = 0  # largest frontier carried across an event
        self.verified = 0  # returns explained so far

    def run(self) -> Verdict:
        # Bound once: the loop runs once per event.
        history, invoke_unknown, invoke_completed, return_completed = (
            self.history, self._invoke_unknown, self._invoke_completed, self._return_completed)
        for event, (_, is_return, index) in enumerate(self.timeline.events):
            op = history[index]
            if op.unknown:
                invoke_unknown(index)
            elif not is_return:
                invoke_completed(index, op)
            else:
                failure = return_completed(event, index, op)
                if failure is not None:
                    return failure
        return self._verdict(True)

    def _invoke_unknown(self, index: int) -> None:
        """From its invocation on, an unknown operation may take effect: pending, or one more junk
        write in hand (or nothing at all when it can no longer matter)."""
        bit = self.unknowns.bit_of.get(index)
        if bit is not None:
            self.frontier = {group: [(pending | bit, junk_writes) for pending, junk_writes in antichain]
                             for group, antichain in self.frontier.items()}
        elif index in self.unknowns.junk_from_invocation:
            self.frontier = {group: [(pending, junk_writes + 1) for pending, junk_writes in antichain]
                             for group, antichain in self.frontier.items()}

    def _invoke_completed(self, index: int, op: Operation) -> None:
        """Give the operation a slot. A read is linearized at once where the register holds its
        value, a refused CAS where it does not hold the expected one."""
        bit = self.in_flight.admit(index, op)
        if op.kind == READ:
            self.frontier = {(value, known | bit if value == op.value else known): antichain
                             for (value, known), antichain in self.frontier.items()}
        elif op.kind == CAS and op.ok is False:
            self.frontier = {(value, known | bit if value != op.expected else known): antichain
                             for (value, known), antichain in self.frontier.items()}

    def _return_completed(self, event: int, index: int, op: Operation) -> Verdict | None:
        """`op` returns, so it must be linearized by now: the next frontier holds the configurations
        where it is. None, or the verdict when none is left (or the search gives up)."""
        bit = self.in_flight.returning(index)
        frontier = self._linearize_by_now(bit, event)
        if frontier is None:
            return self._verdict(False, op, f"over {self.max_states} states explored at one event")
        self.in_flight.release(bit, op)
        if event in self.lifetimes.dying_at:
            frontier = self._collapse_dead(frontier, event)
        if not frontier:
            return self._verdict(False, op)
        self.frontier, self.verified = frontier, self.verified + 1
        size = sum(len(antichain) for antichain in frontier.values())
        self.peak = max(self.peak, size)
        if size > self.max_states:
            return self._verdict(False, op, f"over {self.max_states} configurations carried")
        return None

    def _linearize_by_now(self, returning_bit: int, event: int) -> dict | None:
        """Depth first over the orders of pending operations that end with the returning one: the
        configurations where it is linearized, with its bit cleared (None past `max_states`)."""
        linearized: dict[tuple, list[tuple[int, int]]] = {}
        seen: set = set()
        to_explore = []
        for (value, known), antichain in self.frontier.items():
            for pending, junk_writes in antichain:
                if known & returning_bit:
                    _add_undominated(linearized, value, known & ~returning_bit, pending, junk_writes)
                else:
                    to_explore.append((value, known, pending, junk_writes))
        successors, max_states, explored = self.successors, self.max_states, 0
        while to_explore:
            configuration = to_explore.pop()
            explored += 1
            if len(seen) > max_states:
                self.explored += explored
                return None
            for successor in successors(configuration, event):
                value, known, pending, junk_writes = successor
                if known & returning_bit:  # this order is done, the rest waits for later returns
                    _add_undominated(linearized, value, known & ~returning_bit, pending, junk_writes)
                elif successor not in seen:
                    seen.add(successor)
                    to_explore.append(successor)
        self.explored += explored
        return linearized

    def _collapse_dead(self, frontier: dict, event: int) -> dict:
        """Values and unknown operations that no later operation can observe collapse into junk:
        dead values into JUNK, unknown writes of them into junk writes in hand; unknown CASes
        expecting them are dropped."""
        dead = set(self.lifetimes.dying_at[event])
        becoming_junk, dropped = self.unknowns.expiring_at.get(event, (0, 0))
        collapsed: dict[tuple, list[tuple[int, int]]] = {}
        for (value, known), antichain in frontier.items():
            if value in dead:
                value, known = JUNK, known | self.in_flight.absorbed(JUNK)
            for pending, junk_writes in antichain:
                _add_undominated(collapsed, value, known, pending & ~becoming_junk & ~dropped,
                                 junk_writes + (pending & becoming_junk).bit_count())
        return collapsed

    def _verdict(self, ok: bool, at: Operation | None = None, reason: str = "") -> Verdict:
        verdict = Verdict(ok, self.key, self.operation_count, self.verified, self.explored,
                          windows=len(_quiescent_windows(self.history)), peak_states=self.peak)
        if at is not None:
            verdict.failed_at, verdict.inconclusive, verdict.reason = (at if not reason else None), bool(reason), reason
            verdict.window, verdict.witness = _around(self.history, at)
        return verdict


def _successor_function(lifetimes: _ValueLifetimes, in_flight: _InFlight, unknowns: _UnknownOperations):
    """`successors(configuration, event)`: the configurations one step later. An in-flight write
    or CAS not yet linearized takes effect (if it may), a pending unknown operation does, or a
    junk write in hand does; each step also linearizes the in-flight operations that the new
    value absorbs. (A closure over the search's tables: it runs for every configuration explored.)"""
    canonical, absorbed = lifetimes.canonical, in_flight.absorbed
    in_flight_op, unknown_op = in_flight.op_of_bit, unknowns.op_of_bit
    unknown_write_bits, unknown_cas_bits_expecting = unknowns.write_bits, unknowns.cas_bits_expecting

    def successors(configuration: tuple, event: int) -> list[tuple]:
        value, known, pending, junk_writes = configuration
        found = []
        movers = in_flight.movers & ~known
        while movers:  # each set bit, lowest first
            bit = movers & -movers
            movers ^= bit
            may, new_value = apply_to_register(value, in_flight_op[bit])
            if may:
                new_value = canonical(new_value, event)
                found.append((new_value, known | bit | absorbed(new_value), pending, junk_writes))
        # Unknown CASes that would fail change nothing (and may never fire): not worth trying.
        changing = pending & (unknown_write_bits | unknown_cas_bits_expecting.get(value, 0))
        while changing:
            bit = changing & -changing
            changing ^= bit
            new_value = canonical(unknown_op[bit].value, event)
            found.append((new_value, known | absorbed(new_value), pending & ~bit, junk_writes))
        if junk_writes and value is not JUNK:
            found.append((JUNK, known | absorbed(JUNK), pending, junk_writes - 1))
        return found

    return successors


def _add_undominated(frontier: dict, value, known: int, pending: int, junk_writes: int) -> None:
    """Add a configuration, keeping only those not dominated (same value and known mask, and
    pending unknown operations and junk writes that include another's)."""
    antichain = frontier.get((value, known))
    if antichain is None:
        frontier[(value, known)] = [(pending, junk_writes)]
        return
    for other_pending, other_junk_writes in antichain:
        if pending & ~other_pending == 0 and junk_writes <= other_junk_writes:
            return
    antichain[:] = [(other_pending, other_junk_writes) for other_pending, other_junk_writes in antichain
                    if not (other_pending & ~pending == 0 and other_junk_writes <= junk_writes)]
    antichain.append((pending, junk_writes))


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
