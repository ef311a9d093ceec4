"""`raftkv up`: one command to a working local cluster, and the same data when run again."""

from __future__ import annotations

import os
import select
import signal
import socket
import stat
import subprocess
import sys
import threading
import time

import requests

from tests.support.cluster import HOST
from tests.support.wait import wait_until


def consecutive_free_ports(count: int, start: int = 20000) -> int:
    for base in range(start, 60000, 37):
        ok = True
        for port in range(base, base + count):
            with socket.socket() as s:
                try:
                    s.bind((HOST, port))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free port range")


def start_up(data_dir, http_port, raft_port, *more_args: str):
    proc = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "up", "--data-dir", str(data_dir), "--http-port", str(http_port),
         "--raft-port", str(raft_port), *more_args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    proc.lines = []
    proc.reader = threading.Thread(target=lambda: proc.lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    proc.reader.start()
    return proc


def wait_for_line(proc, fragment: str, timeout: float = 30.0) -> str:
    def printed():
        return next((line for line in list(proc.lines) if fragment in line), None)

    return wait_until(f"{fragment!r} to be printed", printed, timeout,
                      explain=lambda: "output so far:\n" + "".join(proc.lines))


def first_acknowledged_write(proc, url: str, key: str, value: bytes, timeout: float = 30.0) -> float:
    def put():
        assert proc.poll() is None, "`raftkv up` exited:\n" + "".join(proc.lines)
        return requests.put(f"{url}/v1/kv/{key}", data=value, timeout=5)

    wait_until("a write to be acknowledged", put, timeout, until=lambda r: r.status_code == 200 and r.json() is True,
               explain=lambda: "output so far:\n" + "".join(proc.lines))
    return time.monotonic()


def stop_up(proc) -> str:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    proc.reader.join(10)  # the reader ends at the end of the output: everything printed is in proc.lines
    assert not proc.reader.is_alive(), "the output pipe is still open after `raftkv up` exited"
    proc.stdout.close()
    out = "".join(proc.lines)
    assert proc.returncode == 0, out
    return out


def test_up_answers_a_put_and_a_get_and_brings_the_data_back(tmp_path):
    http = consecutive_free_ports(3)
    raft = consecutive_free_ports(3, http + 100)
    url = f"http://{HOST}:{http + 1}"
    started = time.monotonic()
    proc = start_up(tmp_path / "data", http, raft)
    try:
        acked = first_acknowledged_write(proc, url, "greeting", b"hello")
        print(f"raftkv up -> first acknowledged write: {acked - started:.2f}s")
        assert requests.get(f"http://{HOST}:{http + 2}/v1/kv/greeting?raw", timeout=5).content == b"hello"
        wait_for_line(proc, "leader is n")
    finally:
        out = stop_up(proc)
    assert "[n1]" in out and "[n2]" in out and "[n3]" in out, out
    assert "leader is n" in out and f"http://{HOST}:{http}" in out
    # Raft traffic authenticated from the first run, with a secret only this user can read
    secret = tmp_path / "data" / "cluster.secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600 and len(secret.read_text().strip()) == 64
    assert out.count("(authenticated and encrypted)") == 3, out
    for port in (http, http + 1, http + 2):
        with socket.socket() as s:
            assert s.connect_ex((HOST, port)) != 0, "every node must be stopped"
    proc = start_up(tmp_path / "data", http, raft)
    try:
        value = wait_until("the data back after the restart", lambda: requests.get(
            f"{url}/v1/kv/greeting?raw", timeout=5).content, 30, interval=0.1, until=lambda v: v == b"hello")
        assert value == b"hello"
    finally:
        stop_up(proc)


def test_up_refuses_a_port_in_use_in_one_line(tmp_path):
    http = consecutive_free_ports(3)
    with socket.socket() as busy:
        busy.bind((HOST, http + 1))
        busy.listen()
        r = subprocess.run([sys.executable, "-m", "api.cli", "up", "--data-dir", str(tmp_path),
                            "--http-port", str(http), "--raft-port", str(http + 50)],
                           capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and r.stderr.strip().count("\n") == 0 and "in use" in r.stderr


def test_up_add_replaces_a_dead_node_of_a_running_cluster(tmp_path):
    """The README's procedure: a node of a running `raftkv up` dies for good, is removed, and
    `raftkv up --add` joins a new one at new ports; no write is lost."""
    http = consecutive_free_ports(6)
    raft = consecutive_free_ports(6, http + 100)
    data = tmp_path / "data"
    proc = start_up(data, http, raft)
    added = None
    try:
        wait_for_line(proc, "leader is")
        urls = [f"http://{HOST}:{http + i}" for i in range(3)]
        for i in range(50):
            assert requests.put(f"{urls[i % 3]}/v1/kv/k{i}", data=b"v", timeout=10).json() is True
        pid = int(subprocess.check_output(["pgrep", "-f", "--", f"--id n2 .*--data-dir {data}/n2"]).split()[0])
        subprocess.run(["kill", "-9", str(pid)], check=True)
        cli = [sys.executable, "-m", "api.cli"]
        # n2 may have been the leader: the command waits out the election (it retries a 503)
        r = subprocess.run([*cli, "members", "remove", "n2", "--addr", f"{HOST}:{http}"], capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        added = subprocess.Popen([*cli, "up", "--add", "--data-dir", str(data)], stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)

        def n4_voter():
            r = subprocess.run([*cli, "members", "list", "--addr", f"{HOST}:{http}"], capture_output=True, text=True)
            if any(line.startswith("n4") and " voter " in line for line in r.stdout.splitlines()):
                return True
            assert added.poll() is None, f"`raftkv up --add` exited ({added.returncode}) before n4 became a voter"
            return r.stdout + r.stderr

        wait_until("n4 to become a voter", n4_voter, 60, interval=0.2, until=lambda v: v is True)
        listing = subprocess.run([*cli, "members", "list", "--addr", f"{HOST}:{http}"], capture_output=True,
                                 text=True).stdout
        assert "n2" not in listing and listing.count(" voter ") == 3, listing
        n4_url = f"http://{HOST}:{http + 3}"
        # promoted within a few entries of the commit index: then all of them, soon
        wait_until("the new node to hold all 50 acknowledged writes", lambda: requests.get(
            f"{n4_url}/v1/kv/?recurse&stale", timeout=10).json(), 10, interval=0.1, until=lambda e: len(e) == 50)
    finally:
        if added is not None:
            added.send_signal(signal.SIGTERM)
            added.wait(30)
            added.stdout.close()
        stop_up(proc)


def test_a_closed_terminal_stops_every_node(tmp_path):
    """A terminal closed under `raftkv up` (SIGHUP, nobody reading its output any more, as with
    `raftkv up | tee` after Ctrl-C) must stop the nodes, not leave them running on their own."""
    http = consecutive_free_ports(3)
    raft = consecutive_free_ports(3, http + 100)
    read_end, write_end = os.pipe()
    proc = subprocess.Popen([sys.executable, "-m", "api.cli", "up", "--data-dir", str(tmp_path / "data"),
                             "--http-port", str(http), "--raft-port", str(raft)],
                            stdout=write_end, stderr=subprocess.STDOUT)
    os.close(write_end)
    try:
        seen, deadline = b"", time.monotonic() + 30
        while b"leader is n" not in seen and time.monotonic() < deadline:
            if select.select([read_end], [], [], 0.5)[0]:
                seen += os.read(read_end, 65536)
        assert b"leader is n" in seen, seen.decode(errors="replace")
    finally:
        os.close(read_end)  # nobody reads any more: every later print of `up` meets a broken pipe
    proc.send_signal(signal.SIGHUP)
    assert proc.wait(timeout=30) == 0
    for port in [*range(http, http + 3), *range(raft, raft + 3)]:
        with socket.socket() as s:
            assert s.connect_ex((HOST, port)) != 0, f"port {port}: a node outlived `raftkv up`"
