"""The wake-up benchmark (loadtest/bench/wake_hop.py) measures real round trips: every byte comes
back, the echo process exits, the caller's CPU mask is restored, and a run writes a figure for
every placement the machine allows."""

from __future__ import annotations

import json
import os

from loadtest.bench import wake_hop


def test_round_trips_are_measured_and_the_cpu_mask_restored():
    mask = os.sched_getaffinity(0)
    cpus = sorted(mask)
    placement = (cpus[0], cpus[-1])
    times = wake_hop.round_trips_us(placement, 50, 0.0)
    assert len(times) == 50 and times == sorted(times) and times[0] > 0
    assert os.sched_getaffinity(0) == mask


def test_a_run_reports_every_placement(tmp_path, capsys):
    out = tmp_path / "wake.json"
    assert wake_hop.main(["--round-trips", "20", "--think-ms", "0", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    expected = set(wake_hop.placements(sorted(os.sched_getaffinity(0))))
    assert set(data["placements"]) == expected
    for figures in data["placements"].values():
        assert figures["round_trips"] == 20 and 0 < figures["p50_us"] <= figures["p99_us"]
    assert "p50" in capsys.readouterr().out


def test_bad_arguments_are_refused_with_one_line(capsys):
    assert wake_hop.main(["--round-trips", "0"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
