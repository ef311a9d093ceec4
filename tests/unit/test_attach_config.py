"""`raftkv chaos --attach FILE`: a bad node file is one clear line, never a traceback."""

import subprocess
import sys

import pytest

from loadtest.harness import attach


@pytest.mark.parametrize("text, reason", [
    ("", "no [[node]] tables"),
    ("[[node]]\nid = 'a'\n", "`http` must be HOST:PORT"),
    ("[[node]]\nhttp = '127.0.0.1:1'\nkil = 'x'\n", "unknown field(s) kil"),
    ("[[node]]\nhttp = '127.0.0.1:1'\n[[node]]\nid = 'n1'\nhttp = '127.0.0.1:2'\n", "must be unique"),
    ("[[node]\n", "cannot read"),
])
def test_bad_node_files_are_refused_with_a_reason(tmp_path, text, reason):
    path = tmp_path / "nodes.toml"
    path.write_text(text)
    with pytest.raises(attach.ConfigError, match=reason.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        attach.load(str(path))


def test_the_cli_reports_a_bad_node_file_in_one_line(tmp_path):
    path = tmp_path / "nodes.toml"
    path.write_text("[[node]]\nid = 'a'\n")
    r = subprocess.run([sys.executable, "-m", "api.cli", "chaos", "--attach", str(path), "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().count("\n") == 0 and "must be HOST:PORT" in r.stderr and "Traceback" not in r.stderr
