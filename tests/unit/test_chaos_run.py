"""`raftkv chaos` ends a run that cannot finish with a FAIL report and one line, never a
traceback, and keeps the nodes' logs of a failed run (the cluster and the experiment are
stand-ins here: what is tested is the command's own ending)."""

from __future__ import annotations

import json
import os
import shutil

from api.cli import build_parser
from loadtest.chaos import experiment


class StandInCluster:
    def leader(self, timeout: float):
        return None


def test_a_run_that_cannot_finish_reports_fail_and_keeps_the_node_logs(tmp_path, monkeypatch, capsys):
    roots = []

    def start_cluster(args, root, schedule, stack):
        roots.append(root)
        with open(os.path.join(root, "n3.log"), "w") as f:
            f.write("what n3 logged\n")
        return StandInCluster(), experiment.Network(why_not="stand-in")

    def experiment_that_fails(*_args):
        raise RuntimeError("n3 did not become a voter within 120s")

    monkeypatch.setattr(experiment, "start_cluster", start_cluster)
    monkeypatch.setattr(experiment, "experiment", experiment_that_fails)
    out = tmp_path / "out"
    # The command's own parser: its defaults stay in step with what `run` reads.
    args = build_parser(["chaos"]).parse_args(["chaos", "--out", str(out), "--schedule", "replace",
                                               "--duration", "1", "--seed", "1"])
    try:
        assert experiment.run(args) == 1
        report = json.loads((out / "chaos.json").read_text())
        assert report["verdict"]["ok"] is False
        assert "n3 did not become a voter within 120s" in report["verdict"]["error"]
        assert report["logs"] == roots[0]
        with open(os.path.join(roots[0], "n3.log")) as f:
            assert f.read() == "what n3 logged\n"
        printed = capsys.readouterr()
        assert "Traceback" not in printed.err
        assert f"kept in {roots[0]}" in printed.err
        assert printed.out.startswith("chaos: FAIL") and "did not become a voter" in printed.out
    finally:
        for root in roots:
            shutil.rmtree(root, ignore_errors=True)
