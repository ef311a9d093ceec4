import math
import random
import time

from loadtest.checker import CAS, READ, WRITE, Operation, check_history, check_key


def op(kind, call, ret, value=None, expected=None, ok=None):
    return Operation(kind, "k", call, ret, value, expected, ok)


def test_checker_accepts_sequential_history():
    assert check_key([op(WRITE, 0, 1, "a"), op(READ, 2, 3, "a"), op(CAS, 4, 5, "b", "a", True),
                      op(READ, 6, 7, "b")]).ok


def test_checker_accepts_reads_concurrent_with_a_write_seeing_either_value():
    h = [op(WRITE, 0, 1, "a"), op(WRITE, 2, 6, "b"), op(READ, 3, 4, "b"), op(READ, 4.5, 5, "a")]
    assert not check_key(h).ok  # once b was seen, a later read cannot go back to a
    h = [op(WRITE, 0, 1, "a"), op(WRITE, 2, 6, "b"), op(READ, 3, 4, "a"), op(READ, 4.5, 5, "b")]
    assert check_key(h).ok


def test_checker_rejects_a_stale_read_after_a_completed_write():
    h = [op(WRITE, 0, 1, "a"), op(WRITE, 2, 3, "b"), op(READ, 4, 5, "a")]
    verdict = check_key(h)
    assert not verdict.ok and "NOT linearizable" in str(verdict)
    assert verdict.failed_at is h[2] and verdict.window == (4, 5) and not verdict.inconclusive


def test_checker_rejects_a_lost_acknowledged_write():
    assert not check_key([op(WRITE, 0, 1, "a"), op(READ, 2, 3, None)]).ok


def test_checker_lets_an_unknown_write_take_effect_or_not():
    unknown = op(WRITE, 1, math.inf, "x")
    assert check_key([op(WRITE, 0, 0.5, "a"), unknown, op(READ, 2, 3, "x")]).ok
    assert check_key([op(WRITE, 0, 0.5, "a"), op(WRITE, 1, math.inf, "x"), op(READ, 2, 3, "a")]).ok


def test_checker_cas_rules():
    assert check_key([op(CAS, 0, 1, "a", None, True), op(CAS, 2, 3, "b", None, False), op(READ, 4, 5, "a")]).ok
    assert not check_key([op(CAS, 0, 1, "a", None, True), op(CAS, 2, 3, "b", None, True)]).ok
    assert not check_key([op(WRITE, 0, 1, "a"), op(CAS, 2, 3, "b", "a", False)]).ok


def test_checker_splits_by_key():
    a = Operation(WRITE, "a", 0, 1, "1")
    b = Operation(READ, "b", 2, 3, "1")  # key b never written: a violation on b only
    verdicts = check_history([a, b])
    assert [v.ok for v in verdicts] == [True, False]


def test_an_unseen_unknown_write_can_explain_refused_cases_once_each():
    """Unknown writes nobody reads still count: each can explain one refused CAS (then it must
    be overwritten before anyone reads), and only until it is used."""
    def history(unknown_writes):
        h = [op(WRITE, 0, 1, "a")] + [op(WRITE, 1.5, math.inf, f"u{i}") for i in range(unknown_writes)]
        return h + [op(CAS, 2, 3, "b", "a", False), op(WRITE, 4, 5, "a"), op(CAS, 6, 7, "c", "a", False),
                    op(WRITE, 8, 9, "d"), op(READ, 10, 11, "d")]
    assert not check_key(history(0)).ok
    assert not check_key(history(1)).ok
    assert check_key(history(2)).ok
    # ... and it hides the old value: a read of "a" right after the refusal cannot be explained.
    h = [op(WRITE, 0, 1, "a"), op(WRITE, 1.5, math.inf, "x"), op(CAS, 2, 3, "b", "a", False), op(READ, 4, 5, "a")]
    assert not check_key(h).ok


def test_an_unknown_write_read_of_nowhere_still_counts_once_its_value_is_forgotten():
    # Its value is only ever expected by a refused CAS; after that, it can still explain a
    # refusal of a CAS on "a" (then be overwritten by "d").
    h = [op(WRITE, 0, 1, "a"), op(WRITE, 1.5, math.inf, "x"), op(CAS, 2, 3, "y", "x", False),
         op(CAS, 4, 5, "b", "a", False), op(WRITE, 6, 7, "d"), op(READ, 8, 9, "d")]
    assert check_key(h).ok
    assert not check_key(h[:1] + h[2:]).ok


def test_a_refused_cas_needs_another_value_at_some_point_even_when_a_value_is_rewritten():
    h = [op(WRITE, 0, 1, "a"), op(CAS, 2, 5, "b", "a", False), op(WRITE, 3, 4, "a")]
    assert not check_key(h).ok
    assert check_key(h[:2] + [op(WRITE, 3, 4, "c")]).ok


def test_an_unknown_cas_may_fire_late_or_never():
    h = [op(WRITE, 0, 1, "a"), op(CAS, 1.5, math.inf, "b", "a"), op(READ, 2, 3, "a"), op(READ, 4, 5, "b")]
    assert check_key(h).ok
    h[-1] = op(READ, 4, 5, "c")
    assert not check_key(h).ok
    # It cannot fire once its expected value is gone for good.
    h = [op(WRITE, 0, 1, "a"), op(CAS, 1.5, math.inf, "b", "a"), op(WRITE, 2, 3, "c"), op(READ, 4, 5, "b")]
    assert not check_key(h).ok


# --- differential testing against a plain Wing & Gong search over the whole history ---------

def reference(ops, initial=None) -> bool:
    """Wing & Gong with memoisation, no windows, no shortcuts: some order of all completed
    operations and any subset of the unknown ones, respecting real time, fits a register."""
    ops = sorted(ops, key=lambda o: o.call)
    need = sum(1 << i for i, o in enumerate(ops) if not o.unknown)
    seen = set()

    def apply(state, o):
        if o.kind == READ:
            return (state,) if state == o.value else ()
        if o.kind == WRITE:
            return (o.value,)
        if o.ok is None:
            return (o.value if state == o.expected else state,)
        return ((o.value,) if state == o.expected else ()) if o.ok else ((state,) if state != o.expected else ())

    def search(mask, state):
        if mask & need == need:
            return True
        if (mask, state) in seen:
            return False
        seen.add((mask, state))
        first_ret = min(o.ret for i, o in enumerate(ops) if not mask >> i & 1)
        return any(search(mask | 1 << i, s) for i, o in enumerate(ops)
                   if not mask >> i & 1 and o.call <= first_ret for s in apply(state, o))

    return search(0, initial)


def simulate(rng: random.Random, n: int, clients: int, unknown_share: float, values=None,
             think: float = 0.2) -> list[Operation]:
    """A linearizable history: each client issues operations back to back (after a random think
    time); each takes effect at a random instant of its interval on a real register, except
    unknown ones, which take effect at some point after their call, or never."""
    ops, points = [], []
    clock = [rng.random() for _ in range(clients)]
    for seq in range(n):
        c = min(range(clients), key=clock.__getitem__)
        call = clock[c] + rng.expovariate(1 / think) if think else clock[c]
        dur = rng.expovariate(1.0) + 0.01
        roll = rng.random()
        kind = READ if roll < 0.5 else WRITE if roll < 0.8 else CAS
        value = rng.choice(values) if values else f"c{c}-{seq}"
        o = Operation(kind, "k", call, call + dur, None if kind == READ else value, client=f"c{c}")
        point = call + rng.random() * dur
        if kind != READ and rng.random() < unknown_share:
            o.ret = math.inf
            point = call + rng.expovariate(0.3) if rng.random() < 0.5 else None
        clock[c] = call + dur
        ops.append(o)
        points.append(point)
    state, written = None, [None]
    for o in sorted(ops, key=lambda o: o.call):  # a CAS expects one of the values last written
        if o.kind == CAS:
            o.expected = rng.choice(written[-3:])
        if o.kind != READ:
            written.append(o.value)
    for _, o in sorted(((p, o) for p, o in zip(points, ops, strict=True) if p is not None), key=lambda x: x[0]):
        if o.kind == READ:
            o.value = state
        elif o.kind == WRITE:
            state = o.value
        else:
            if not o.unknown:
                o.ok = state == o.expected
            if state == o.expected:
                state = o.value
    return ops


def mutate(rng: random.Random, ops: list[Operation]) -> None:
    """A small, plausible lie: a read of a recent other value, a CAS outcome flipped, an unknown
    operation claimed to have completed, or an operation shifted in time."""
    o = rng.choice(ops)
    if o.kind == READ:
        o.value = rng.choice([x.value for x in ops if x.kind != READ and abs(x.call - o.call) < 3] + [None])
    elif o.kind == CAS and not o.unknown:
        o.ok = not o.ok
    elif o.unknown:
        o.ret = o.call + rng.random()
    else:
        o.call, o.ret = o.call + 1, o.ret + 1


def differential(cases: int, seed: int) -> dict[bool, int]:
    """Small random histories, half of them mutated: the checker must agree with `reference`."""
    rng = random.Random(seed)
    outcomes = {True: 0, False: 0}
    for case in range(cases):
        n = rng.randint(2, 10 if case % 3 else 24)
        values = ["a", "b", "c"] if case % 4 == 0 else None  # also values written more than once
        ops = simulate(rng, n, rng.randint(1, 5), rng.choice([0.0, 0.2, 0.5]), values, rng.choice([0, 0.2, 1]))
        if case % 2:
            for _ in range(rng.randint(1, 2)):
                mutate(rng, ops)
        verdict, expected = check_key(ops), reference(ops)
        assert not verdict.inconclusive
        assert verdict.ok == expected, f"case {case}: checker {verdict.ok}, reference {expected}\n" + "\n".join(
            str(o) for o in sorted(ops, key=lambda o: o.call))
        outcomes[expected] += 1
    return outcomes


def test_differential_against_the_unwindowed_search():
    outcomes = differential(1500, seed=7)
    assert min(outcomes.values()) > 300, outcomes  # both answers well represented


def test_a_long_history_of_one_key_is_checked_exactly():
    rng = random.Random(1)
    ops = simulate(rng, 50_000, clients=8, unknown_share=0.02, think=0.3)
    unknown = sum(o.unknown for o in ops)
    start = time.perf_counter()
    verdict = check_key(ops)
    took = time.perf_counter() - start
    print(f"\n{len(ops)} ops ({unknown} unknown), 8 clients: {took:.2f}s; {verdict}")
    assert verdict.ok, str(verdict)

    # Corrupt one read in the middle to return a value overwritten by a write that completed
    # before the read was invoked, itself after the stale value's write had completed.
    known_writes = sorted((o for o in ops if o.kind == WRITE and not o.unknown), key=lambda o: o.call)
    read = next(o for o in sorted(ops, key=lambda o: o.call)[len(ops) // 2:] if o.kind == READ)
    newer = next(w for w in reversed(known_writes) if w.ret < read.call)
    older = next(w for w in reversed(known_writes) if w.ret < newer.call)
    read.value = older.value
    start = time.perf_counter()
    verdict = check_key(ops)
    print(f"corrupted: {time.perf_counter() - start:.2f}s; {str(verdict)[:300]}")
    assert not verdict.ok and not verdict.inconclusive
    assert verdict.failed_at is read and read in verdict.witness
    assert verdict.window[0] <= read.call <= read.ret <= verdict.window[1]
