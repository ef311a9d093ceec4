"""BENCHMARKS.md's comparison section from a compare run's JSON: medians over rounds, the
ratios against etcd per load generator, and before/after rows between raftkv builds."""

from __future__ import annotations

import json

import pytest

from loadtest.bench import compare, report


def point(system, generator, workload, clients, ops, round_=1, p50=1.0, p99=5.0, errors=0, cores=0.5, us=100.0):
    return {"system": system, "generator": generator, "workload": workload, "concurrency": clients,
            "ops_per_s": ops, "p50_ms": p50, "p99_ms": p99, "max_ms": 9.0, "requests": int(ops), "errors": errors,
            "generator_cpu_s": 1.0, "generator_cores": cores, "generator_us_per_op": us, "round": round_}


def doc(points, systems=("before", "after", "etcd"), generators=("python", "wrk"), note="") -> dict:
    return {"machine": {"cpus": 2, "processor": "x86_64", "platform": "Linux", "python": "3.11"},
            "started": "2026-12-02T18:00:00Z", "note": note, "key_bytes": 16, "value_bytes": 128,
            "keyspace": 10000, "duration_s": 3.0, "warmup_s": 1.0, "procs": 2, "rounds": 1, "elapsed_s": 60,
            "generators": list(generators), "ceiling": {},
            "systems": [{"label": s, "kind": "etcd", "version": "3.4.23"} if s == "etcd" else
                        {"label": s, "kind": "raftkv",
                         "build": {"command": ["x"], "commit": "abc1234", "dirty": s == "after"}}
                        for s in systems],
            "points": points}


def test_summarize_takes_the_median_of_the_rounds_and_adds_up_errors():
    cells = report.summarize(doc([point("etcd", "wrk", "put", 32, ops, round_=r, errors=1, p99=p99)
                                  for r, (ops, p99) in enumerate([(100, 9.0), (300, 3.0), (200, 4.0)], 1)]))
    c = cells[("wrk", "put", 32, "etcd")]
    assert (c["ops_per_s"], c["p99_ms"], c["errors"], c["rounds"]) == (200, 4.0, 3, 3)


def test_median_of_an_even_count_is_the_mean_of_the_middle_two_and_ignores_missing():
    assert report._median([1, None, 3, 10, 2]) == 2.5 and report._median([None]) is None


def test_compare_tables_give_each_generator_its_rows_and_the_ratio_to_etcd():
    pts = [point("before", g, "put", 32, 1000) for g in ("python", "wrk")]
    pts += [point("after", "python", "put", 32, 1500, p50=0.8), point("after", "wrk", "put", 32, 3000, p50=0.5)]
    pts += [point("etcd", "python", "put", 32, 1000, cores=0.75, us=750.0), point("etcd", "wrk", "put", 32, 1200)]
    text = report.compare_tables(doc(pts))
    assert "### Load generator: Python" in text and "### Load generator: wrk" in text
    assert "| put | 32 | after | 1,500 | 0.80 | 5.00 | 0 | 0.50 | 100.0 | 1.50× |" in text
    assert "| put | 32 | etcd | 1,000 | 1.00 | 5.00 | 0 | 0.75 | 750.0 |  |" in text  # generator CPU shown
    assert "| put | 32 | after | 1.50× | 2.50× |" in text  # raftkv/etcd by generator: python, wrk
    assert "### Before and after: each build against before" in text
    assert "| put | 32 | wrk | after | 3,000 | 3.00× | 1.00 → 0.50 | 5.00 → 5.00 |" in text


def test_one_build_has_no_before_and_after_and_no_etcd_has_no_ratio():
    text = report.compare_tables(doc([point("raftkv", "wrk", "get-stale", 1, 500)], systems=("raftkv",),
                                     generators=("wrk",)))
    assert "Before and after" not in text and "by load generator" not in text
    assert "| get-stale | 1 | raftkv | 500 | 1.00 | 5.00 | 0 | 0.50 | 100.0 | – |" in text


def test_report_writes_the_compare_section_with_its_note_and_marks_the_earlier_run(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    pts = [point(s, g, "put", 1, 400) for s in ("before", "after", "etcd") for g in ("python", "wrk")]
    (results / "compare.json").write_text(json.dumps(doc(pts, note="Trial run, 3 s per cell: not the final figures")))
    legacy = {"ceiling": {"concurrency": 32, "ops_per_s": 10000},
              "comparison": [{"workload": "put", "concurrency": 1, "raftkv_ops": 437, "etcd_ops": 423, "ratio": 1.03,
                              "raftkv_p50": 2.21, "etcd_p50": 2.18, "raftkv_p99": 4.18, "etcd_p99": 5.33}]}
    (results / "compare-etcd.json").write_text(json.dumps(legacy))
    (results / "compare-run-stop20.json").write_text(json.dumps(doc(pts, note="the run before")))
    (results / "compare-run-stop20.png").write_bytes(b"\x89PNG")
    out = tmp_path / "B.md"
    assert report.main(["--results", str(results), "--out", str(out)]) == 0
    text = out.read_text()
    assert "## raftkv against etcd 3.4: one run, two load generators" in text
    assert "**Trial run, 3 s per cell: not the final figures**" in text
    assert "`before` (commit abc1234)" in text and "`after` (commit abc1234 with local changes)" in text
    assert "## Earlier run: raftkv against etcd 3.4 (Python generator only" in text
    assert text.index("one run, two load generators") < text.index("Earlier run")
    kept = text.index("## Earlier run: raftkv against etcd 3.4, two load generators")
    assert text.index("**the run before**") > kept and "(loadtest/results/compare-run-stop20.png)" in text[kept:]


@pytest.mark.parametrize("arg, why", [
    ("nolabel", "expected LABEL=/path/to/venv/bin/raftkv"),
    ("etcd=/bin/true", "not 'etcd'"),
    ("a b=/bin/true", "expected LABEL="),
    ("old=/nonexistent/raftkv", "is not an executable file"),
])
def test_a_bad_raftkv_build_is_a_one_line_usage_error(arg, why, capsys):
    with pytest.raises(SystemExit) as exc:
        compare.main(["--raftkv-build", arg])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert why in err and "Traceback" not in err


def test_two_builds_may_not_share_a_label(capsys):
    with pytest.raises(SystemExit):
        compare.main(["--raftkv-build", "a=/bin/true", "--raftkv-build", "a=/bin/true"])
    assert "labels must differ" in capsys.readouterr().err


def test_hand_written_notes_come_last_verbatim_without_their_comment(tmp_path):
    (tmp_path / "notes.md").write_text("<!-- kept by hand -->\n\n## A one-off measurement\n\n| a | b |\n")
    out = tmp_path / "B.md"
    assert report.main(["--results", str(tmp_path), "--out", str(out)]) == 0
    text = out.read_text()
    assert text.endswith("\n## A one-off measurement\n\n| a | b |\n") and "kept by hand" not in text


def test_three_builds_are_also_compared_each_with_the_one_before():
    pts = [point(b, "wrk", "put", 32, ops) for b, ops in (("base", 1000), ("readindex", 1500), ("pipeline", 3000))]
    text = report.compare_tables(doc(pts, systems=("base", "readindex", "pipeline"), generators=("wrk",)))
    assert "| vs base | vs the build before |" in text
    assert "| put | 32 | wrk | readindex | 1,500 | 1.50× | 1.50× |" in text
    assert "| put | 32 | wrk | pipeline | 3,000 | 3.00× | 2.00× |" in text


def test_several_rounds_show_the_median_and_the_spread_of_ops():
    d = doc([point("etcd", "wrk", "put", 32, ops, round_=r) for r, ops in enumerate((900, 1000, 1300), 1)],
            systems=("etcd",), generators=("wrk",))
    d["rounds"] = 3
    text = report.compare_tables(d)
    assert "the median of 3 rounds" in text and "| put | 32 | etcd | 1,000 (900–1,300) |" in text


def _cpu_doc(ops_per_s: float, client_us: int, loops: tuple[int, int, int], raft: tuple[int, int, int]) -> dict:
    nodes = [{"node": f"n{i + 1}", "role": "follower", "main_thread_us": m, "other_threads_us": o}
             for i, (m, o) in enumerate(zip(loops, raft, strict=True))]
    return {"workload": "get-consistent", "generator": "wrk", "ops_per_s": ops_per_s, "client_us": client_us,
            "nodes": nodes, "nodes_total_us": sum(loops) + sum(raft)}


def test_the_cpu_budget_says_how_far_raftkv_is_from_one_and_a_half_times_etcd_or_that_it_got_there():
    etcd = {"ops_per_s": 4000.0, "client_us": 40, "nodes_total_us": 460}
    short = report._budget(_cpu_doc(5000.0, 35, (60, 60, 60), (40, 40, 40)), etcd)  # 300 µs, 1.25x etcd
    assert "1.25x" in short and "about 244 µs per operation, 19 % less than now" in short
    assert "Raft layer alone" not in short  # its 120 µs fit in the budget
    met = report._budget(_cpu_doc(7000.0, 35, (50, 50, 50), (30, 30, 30)), etcd)  # 240 µs, 1.75x etcd
    assert "1.75x" in met and "more than they spent: this run met the rate" in met and "less than now" not in met
    raft_bound = report._budget(_cpu_doc(5000.0, 35, (10, 10, 10), (90, 90, 90)), etcd)
    assert "the Raft layer alone is over the budget" in raft_bound
