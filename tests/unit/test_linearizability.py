import math

from loadtest.linearizability import CAS, READ, WRITE, Operation, check_history, check_key


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
