"""The chaos lock workload (loadtest/chaos/lock_workload.py) on a real 3-node cluster: three
contender processes, the holder paused past its TTL, then the leader killed. The store must
never let two tenures overlap: fenced writes are accepted in token order, and the paused
holder's write with its old token is refused when it wakes up."""

from __future__ import annotations

import json

from loadtest.chaos.lock_workload import judge, run_lock_workload


def test_lock_chaos_fenced_writes_stay_in_token_order_under_a_holder_pause_and_a_leader_kill(cluster, tmp_path):
    run = run_lock_workload(cluster, str(tmp_path), duration_s=36, faults=[(3, "pause-holder"), (24, "kill-leader")])
    verdict = run["verdict"]
    print(json.dumps(verdict, indent=1))
    assert verdict["ok"], verdict["violations"]
    assert [f["kind"] for f in run["faults"]] == ["pause-holder", "kill-leader"]
    assert run["faults"][0]["target"] is not None, "nobody held the lock when the pause came"
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
