"""`raftkv up`: one command to a working local cluster, and the same data when run again."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time

import requests

from tests.support.cluster import HOST


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


def start_up(data_dir, http_port, raft_port):
    proc = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "up", "--data-dir", str(data_dir), "--http-port", str(http_port),
         "--raft-port", str(raft_port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    proc.lines = []
    threading.Thread(target=lambda: proc.lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()
    return proc


def wait_for_line(proc, fragment: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in list(proc.lines):
            if fragment in line:
                return line
        time.sleep(0.05)
    raise AssertionError(f"{fragment!r} not printed; output so far:\n{''.join(proc.lines)}")


def first_acknowledged_write(url: str, key: str, value: bytes, timeout: float = 30.0) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            r = requests.put(f"{url}/v1/kv/{key}", data=value, timeout=5)
            if r.status_code == 200 and r.json() is True:
                return time.monotonic()
        except requests.RequestException:
            pass
        time.sleep(0.05)
    raise AssertionError("no write acknowledged")


def stop_up(proc) -> str:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    time.sleep(0.2)  # let the reader thread drain the pipe
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
        acked = first_acknowledged_write(url, "greeting", b"hello")
        print(f"raftkv up -> first acknowledged write: {acked - started:.2f}s")
        assert requests.get(f"http://{HOST}:{http + 2}/v1/kv/greeting?raw", timeout=5).content == b"hello"
        wait_for_line(proc, "leader is n")
    finally:
        out = stop_up(proc)
    assert "[n1]" in out and "[n2]" in out and "[n3]" in out, out
    assert "leader is n" in out and f"http://{HOST}:{http}" in out
    for port in (http, http + 1, http + 2):
        with socket.socket() as s:
            assert s.connect_ex((HOST, port)) != 0, "every node must be stopped"
    proc = start_up(tmp_path / "data", http, raft)
    try:
        deadline = time.monotonic() + 30
        value = None
        while time.monotonic() < deadline and value != b"hello":
            try:
                value = requests.get(f"{url}/v1/kv/greeting?raw", timeout=5).content
            except requests.RequestException:
                time.sleep(0.1)
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
