"""`raftkv chaos --workload lock` (loadtest/chaos/lock_workload.py) on a real 3-node cluster: three
contender processes, the holder paused past its TTL, then the leader killed. The store must
never let two tenures overlap: fenced writes are accepted in token order, and the paused
holder's write with its old token is refused when it wakes up."""

from __future__ import annotations

import json
import subprocess
import sys

from loadtest.chaos.lock_workload import judge


def test_lock_chaos_fenced_writes_stay_in_token_order_under_a_holder_pause_and_a_leader_kill(tmp_path):
    out = tmp_path / "report"
    done = subprocess.run([sys.executable, "-m", "api.cli", "chaos", "--workload", "lock", "--duration", "36",
                           "--out", str(out)], capture_output=True, text=True, timeout=300)
    print(done.stdout)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    report = json.loads((out / "lock-report.json").read_text())
    verdict = report["verdict"]
    assert verdict["ok"] and done.stdout.startswith("lock chaos: PASS")
    assert [f["kind"] for f in report["faults"]] == ["pause-holder", "kill-leader"]
    assert report["faults"][0]["target"] is not None, "nobody held the lock when the pause came"
    assert verdict["tenures"] >= 3 and verdict["accepted_writes"] >= 20
    assert verdict["stale_token_refusals"] >= 1  # the paused holder woke up and tried its old token
    assert all(u["unavailable_s"] is not None for u in verdict["unavailability"])


def test_lock_chaos_judge_flags_overlapping_tenures_and_reused_tokens():
    events = [
        {"t": 1, "ev": "acquired", "client": "c0", "token": 1, "session": "a"},
        {"t": 2, "ev": "write", "client": "c0", "token": 1, "ok": True, "index": 10},
        {"t": 3, "ev": "acquired", "client": "c1", "token": 2, "session": "b"},
        {"t": 4, "ev": "write", "client": "c1", "token": 2, "ok": True, "index": 12},
        {"t": 5, "ev": "write", "client": "c0", "token": 1, "ok": True, "index": 13},  # an old token accepted
        {"t": 6, "ev": "acquired", "client": "c2", "token": 2, "session": "c"},  # one token, two sessions
    ]
    verdict = judge(events, [{"t": 2.5, "kind": "pause-holder", "target": "c0"}])
    assert not verdict["ok"] and len(verdict["violations"]) == 2
    assert verdict["unavailability"] == [{"kind": "pause-holder", "target": "c0", "unavailable_s": 1.5}]
