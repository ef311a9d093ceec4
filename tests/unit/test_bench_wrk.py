"""The wrk driver's arithmetic: its output parsed, its processes planned over the nodes, and
their counts and quantiles merged into one point."""

from __future__ import annotations

import json

import pytest

from loadtest.bench import wrk


def grid(us_at) -> list:
    """A quantile grid as wrk_kv.lua prints it, the latency at each percent given by `us_at`."""
    points = [i / 10 for i in range(1, 991)] + [i / 100 for i in range(9901, 10000)] + [100]
    return [[p, us_at(p)] for p in points]


def process(requests, us_at, non2xx=0, seconds=2.0, **errors) -> dict:
    errs = {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0, **errors}
    return {"duration_us": int(seconds * 1e6), "requests": requests, "bytes": 0, "non2xx": non2xx, "errors": errs,
            "quantiles": grid(us_at)}


def test_parse_output_finds_the_json_line_among_wrks_own_text():
    doc = process(10, lambda p: 1000)
    text = "Running 2s test @ http://127.0.0.1:1\n  1 threads\nWRK_JSON " + json.dumps(doc) + "\nRequests/sec: 5\n"
    assert wrk.parse_output(text) == doc


def test_parse_output_without_the_line_is_a_clear_error():
    with pytest.raises(ValueError, match="no WRK_JSON line in wrk's output: .*unable to connect"):
        wrk.parse_output("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_plan_splits_connections_over_the_nodes_at_once():
    assert wrk.plan(["a", "b", "c"], 32, 10) == [[("a", 11, 10), ("b", 11, 10), ("c", 10, 10)]]
    assert wrk.plan(["a", "b", "c"], 3, 2.4) == [[("a", 1, 2), ("b", 1, 2), ("c", 1, 2)]]


def test_plan_lets_the_nodes_take_turns_when_clients_are_fewer():
    assert wrk.plan(["a", "b", "c"], 1, 9) == [[("a", 1, 3)], [("b", 1, 3)], [("c", 1, 3)]]
    assert wrk.plan(["a", "b", "c"], 1, 1) == [[("a", 1, 1)], [("b", 1, 1)], [("c", 1, 1)]]  # whole seconds


def test_one_process_keeps_its_own_percentiles():
    point = wrk.merge("put", 4, [[process(1000, lambda p: int(p * 100))]], cpu_s=0.5)
    assert (point["p50_ms"], point["p90_ms"], point["p99_ms"]) == (5.0, 9.0, 9.9)
    assert point["max_ms"] == 10.0
    assert point["ops_per_s"] == 500.0 and point["requests"] == 1000 and point["errors"] == 0
    assert (point["generator"], point["workload"], point["concurrency"]) == ("wrk", "put", 4)


def test_processes_merge_by_their_request_counts():
    fast, slow = process(100, lambda p: 1000), process(300, lambda p: 3000)
    point = wrk.merge("get-stale", 32, [[fast, slow]], cpu_s=1.0)
    assert point["p50_ms"] == 3.0  # three quarters of the requests took 3 ms
    assert wrk.quantile([fast, slow], 0.25) == 1000 and wrk.quantile([fast, slow], 0.26) == 3000
    assert point["ops_per_s"] == 200.0  # 400 answers in 2 s: the processes ran at once


def test_rounds_one_after_the_other_add_their_times():
    rounds = [[process(100, lambda p: 1000, seconds=1.0)], [process(300, lambda p: 2000, seconds=1.0)],
              [process(200, lambda p: 3000, seconds=1.0)]]
    point = wrk.merge("put", 1, rounds, cpu_s=0.3)
    assert point["ops_per_s"] == 200.0 and point["seconds"] == 3.0
    assert point["p50_ms"] == 2.0 and point["max_ms"] == 3.0


def test_non_2xx_and_socket_errors_count_as_errors_and_not_as_answers():
    # wrk's own `status` count (statuses above 399) is part of non2xx already: not counted twice.
    p = process(100, lambda p: 1000, non2xx=10, connect=1, read=2, write=3, timeout=4, status=10)
    point = wrk.merge("get-stale", 4, [[p]], cpu_s=0.9)
    assert point["errors"] == 20 and point["requests"] == 90 and point["ops_per_s"] == 45.0


def test_generator_cpu_is_given_as_seconds_cores_and_microseconds_per_answer():
    point = wrk.merge("put", 32, [[process(4000, lambda p: 1000, seconds=4.0)]], cpu_s=2.0)
    assert (point["generator_cpu_s"], point["generator_cores"], point["generator_us_per_op"]) == (2.0, 0.5, 500.0)


def test_no_answers_give_no_percentiles_and_no_crash():
    empty = {"duration_us": 1_000_000, "requests": 0, "bytes": 0, "non2xx": 0, "quantiles": [],
             "errors": {"connect": 3, "read": 0, "write": 0, "status": 0, "timeout": 0}}
    point = wrk.merge("put", 1, [[empty]], cpu_s=0.01)
    assert point["p50_ms"] is None and point["ops_per_s"] == 0.0 and point["errors"] == 3
    assert point["generator_us_per_op"] is None
