"""Sessions and locks on a real 3-node cluster, driven by the unmodified py-consul client: TTL
expiry and renewal, release and delete behaviours, lock-delay, a paused holder losing its lock,
sessions living through a leader kill and a whole-cluster restart."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import urllib.request

import consul
import pytest

from node.state_machine import from_image
from snapshots import format as fmt
from tests.support.cluster import Cluster
from tests.support.wait import wait_until

TTL_S = 10  # py-consul's (and Consul's) smallest TTL


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(str(tmp_path_factory.mktemp("sessions"))).start()
    try:
        c.leader()
        yield c
    finally:
        c.stop()


def client(node) -> consul.Consul:
    host, port = node.http.rsplit(":", 1)
    return consul.Consul(host=host, port=int(port))


def live_client(cluster) -> consul.Consul:
    return client(next(n for n in cluster.nodes if n.alive()))


def holder(c: consul.Consul, key: str) -> str | None:
    _, entry = c.kv.get(key)
    return None if entry is None else entry.get("Session")


class Renewer:
    """Renews sessions every `every_s` through whichever node answers, in a thread."""

    def __init__(self, cluster, session_ids, every_s: float = 2.0) -> None:
        self.cluster, self.ids, self.every_s = cluster, list(session_ids), every_s
        self.stop = threading.Event()
        self.failures: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Renewer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(10)

    def _run(self) -> None:
        while not self.stop.wait(self.every_s):
            for sid in self.ids:
                for node in self.cluster.nodes:  # a renewal reaches the leader through any live node
                    if not node.alive():
                        continue
                    try:
                        client(node).session.renew(sid)
                        break
                    except consul.NotFound:
                        self.failures.append(f"{sid} gone")
                        break
                    except Exception as exc:  # no leader for a moment: the next node, or the next round
                        self.failures.append(f"{node.node_id}: {exc}")


def test_sessions_py_consul_lifecycle_and_locks_through_every_node(cluster):
    c1, c2, c3 = (client(n) for n in cluster.nodes)
    sid = c1.session.create(name="web", ttl=TTL_S, lock_delay=0)
    other = c2.session.create(name="db", behavior="delete", lock_delay=0)
    _, info = c3.session.info(sid, consistency="consistent")
    assert info["ID"] == sid and info["Name"] == "web" and info["TTL"] == "10s" and info["Node"] == "n1"
    assert {s["ID"] for s in c2.session.list()[1]} >= {sid, other}
    assert [s["ID"] for s in c3.session.node("n2")[1]] == [other]
    assert c2.kv.put("svc/leader", "n1", acquire=sid) is True
    assert c3.kv.put("svc/leader", "n2", acquire=other) is False
    _, entry = c3.kv.get("svc/leader")
    assert entry["Session"] == sid and entry["LockIndex"] == 1 and entry["Value"] == b"n1"
    assert c1.kv.put("svc/leader", "n1 again", acquire=sid) is True  # the holder: no new token
    assert c1.kv.get("svc/leader")[1]["LockIndex"] == 1
    assert c3.session.renew(sid)["ID"] == sid
    assert c1.kv.put("svc/leader", "", release=sid) is True
    assert c2.kv.put("svc/leader", "n2", acquire=other) is True
    assert c2.kv.get("svc/leader")[1]["LockIndex"] == 2
    assert c3.session.destroy(other) is True and c1.session.destroy(other) is True
    assert c1.kv.get("svc/leader", consistency="consistent")[1] is None  # delete behaviour
    assert c2.session.destroy(sid) is True
    with pytest.raises(consul.NotFound, match="not found"):  # 404: gone
        c3.session.renew(sid)


def test_sessions_ttl_expiry_releases_or_deletes_and_renewal_keeps_a_session(cluster):
    c = live_client(cluster)
    kept = c.session.create(ttl=TTL_S, lock_delay=0)
    released = c.session.create(ttl=TTL_S, lock_delay=0)
    deleted = c.session.create(ttl=TTL_S, behavior="delete", lock_delay=0)
    started = time.monotonic()
    for key, sid in (("ttl/kept", kept), ("ttl/released", released), ("ttl/deleted", deleted)):
        assert c.kv.put(key, "v", acquire=sid) is True
    with Renewer(cluster, [kept]):
        wait_until("the unrenewed sessions to expire",
                   lambda: c.session.info(released)[1] is None and c.session.info(deleted)[1] is None, 3 * TTL_S)
        expired_after = time.monotonic() - started
        print(f"unrenewed TTL {TTL_S}s sessions invalidated after {expired_after:.1f}s")
        assert expired_after >= TTL_S - 0.5  # never early (the timer starts after the create commits)
        assert c.session.info(kept)[1] is not None and holder(c, "ttl/kept") == kept
    _, entry = c.kv.get("ttl/released")
    assert entry is not None and "Session" not in entry and entry["LockIndex"] == 1
    assert c.kv.get("ttl/deleted")[1] is None
    c.session.destroy(kept)


def test_sessions_lock_delay_blocks_reacquisition_after_the_holder_ends(cluster):
    c = live_client(cluster)
    first = c.session.create(lock_delay=3)
    second = c.session.create(lock_delay=0)
    assert c.kv.put("ld/key", "1", acquire=first) is True
    c.session.destroy(first)
    ended = time.monotonic()
    assert c.kv.put("ld/key", "2", acquire=second) is False  # within the 3 s lock-delay
    wait_until("the lock-delay to pass", lambda: c.kv.put("ld/key", "2", acquire=second), 15, interval=0.2)
    waited = time.monotonic() - ended
    print(f"re-acquired {waited:.1f}s after the session ended (lock-delay 3s)")
    assert waited >= 2.5
    assert holder(c, "ld/key") == second
    c.session.destroy(second)


HOLDER = """
import sys, time, consul
host, port, key, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
c = consul.Consul(host=host, port=port)
sid = c.session.create(ttl=10, lock_delay=1)
assert c.kv.put(key, "paused-holder", acquire=sid)
with open(out + ".tmp", "w") as f:
    f.write(sid)
import os; os.rename(out + ".tmp", out)
while True:
    time.sleep(2)
    c.session.renew(sid)
"""


def test_sessions_a_paused_clients_session_expires_and_another_takes_its_lock(cluster, tmp_path):
    node = cluster.followers()[0]
    host, port = node.http.rsplit(":", 1)
    out = tmp_path / "sid"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, host, port, "pause/lock", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        paused_sid = wait_until("the holder to take the lock", lambda: out.exists() and out.read_text(), 20)
        c = client(cluster.nodes[0])
        contender = c.session.create(ttl=TTL_S, lock_delay=0)
        time.sleep(3)  # not synchronisation: the holder renews meanwhile (its session must outlive its TTL...)
        assert holder(c, "pause/lock") == paused_sid and c.kv.put("pause/lock", "me", acquire=contender) is False
        proc.send_signal(signal.SIGSTOP)
        paused = time.monotonic()
        with Renewer(cluster, [contender]):
            wait_until("the contender to take the lock",
                       lambda: c.kv.put("pause/lock", "me", acquire=contender), 4 * TTL_S, interval=0.2)
        taken_after = time.monotonic() - paused
        print(f"lock taken {taken_after:.1f}s after its holder was paused (TTL {TTL_S}s, lock-delay 1s)")
        _, entry = c.kv.get("pause/lock")
        assert entry["Session"] == contender and entry["LockIndex"] == 2 and entry["Value"] == b"me"
        assert c.session.info(paused_sid)[1] is None
        c.session.destroy(contender)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)


def test_sessions_survive_a_leader_kill_and_a_whole_cluster_restart(cluster):
    leader = cluster.leader()
    c = client(next(n for n in cluster.nodes if n is not leader))
    sid = c.session.create(ttl=TTL_S, lock_delay=0)
    assert c.kv.put("ha/lock", "x", acquire=sid) is True
    with Renewer(cluster, [sid]) as renewer:
        leader.kill()
        killed = time.monotonic()
        wait_until("the holder's lock to be usable again",  # a holder's re-acquire: a write under the lock
                   lambda: c.kv.put("ha/lock", "y", acquire=sid), 20, interval=0.05)
        print(f"lock usable by its holder {time.monotonic() - killed:.2f}s after the leader was killed")
        time.sleep(TTL_S + 5)  # not synchronisation: longer than a TTL under the new leader, renewed throughout
        assert c.session.info(sid, consistency="consistent")[1] is not None, renewer.failures
        assert holder(c, "ha/lock") == sid
        leader.start()
        cluster.leader()
        cluster.wait_applied(max(n.status()["applied_index"] for n in cluster.nodes if n.status()))
    for node in cluster.nodes:  # each node writes a snapshot now: the restart starts from it
        with urllib.request.urlopen(f"{node.url}/v1/snapshot?stale", timeout=60) as resp:
            _, meta, entries = fmt.read_bytes(resp.read())
        state = from_image(meta, entries)
        assert state.sessions.get(sid) is not None and state.get("ha/lock").session == sid
    cluster.stop()  # every node down at once: the session lives in the snapshots and the log
    cluster.start()
    cluster.leader(timeout=30)
    c = live_client(cluster)
    assert c.session.info(sid, consistency="consistent")[1] is not None and holder(c, "ha/lock") == sid
    # Without renewals it expires under the restarted cluster's leader, a full TTL after it took office.
    wait_until("the session to expire after the restart", lambda: c.session.info(sid)[1] is None, 4 * TTL_S)
    assert "Session" not in c.kv.get("ha/lock")[1]


def test_sessions_agent_self_names_the_node_for_lock_clients(cluster):
    for node in cluster.nodes:
        assert client(node).agent.self()["Config"]["NodeName"] == node.node_id


def raftkv(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "api.cli", *args], capture_output=True, text=True, timeout=timeout)


def test_sessions_cli_create_list_info_renew_destroy(cluster):
    addr = cluster.nodes[1].http
    made = raftkv("session", "create", "--addr", addr, "--name", "cli", "--ttl", "30s", "--behavior", "delete")
    assert made.returncode == 0, made.stderr
    sid = made.stdout.strip()
    listed = raftkv("session", "list", "--addr", addr)
    assert listed.returncode == 0 and sid in listed.stdout and "delete" in listed.stdout
    info = raftkv("session", "info", sid, "--addr", addr)
    assert info.returncode == 0 and '"TTL": "30s"' in info.stdout and '"Node": "n2"' in info.stdout
    assert raftkv("session", "renew", sid, "--addr", addr).returncode == 0
    assert raftkv("session", "destroy", sid, "--addr", addr).returncode == 0
    gone = raftkv("session", "renew", sid, "--addr", addr)
    assert gone.returncode == 1 and gone.stderr.count("\n") == 1 and "HTTP 404" in gone.stderr
    bad = raftkv("session", "create", "--addr", addr, "--ttl", "5s")
    assert bad.returncode == 1 and "must be between [10s=24h0m0s]" in bad.stderr


CHILD = "import os, sys; print(os.environ['RAFTKV_LOCK_INDEX'], os.environ['RAFTKV_LOCK_KEY']); sys.exit(3)"


def test_sessions_lock_cli_runs_the_command_with_the_fencing_token_and_its_exit_status(cluster):
    addr = ",".join(n.http for n in cluster.nodes)
    c = live_client(cluster)
    tokens = []
    for _ in range(2):
        done = raftkv("lock", "--addr", addr, "--lock-delay", "0", "jobs/nightly", "--", sys.executable, "-c", CHILD)
        assert done.returncode == 3, done.stderr
        token, key = done.stdout.split()
        assert key == "jobs/nightly/.lock"
        tokens.append(int(token))
        _, entry = c.kv.get("jobs/nightly/.lock")
        assert "Session" not in entry  # released on exit
    assert tokens[1] == tokens[0] + 1  # every acquisition a new, larger fencing token
    usage = raftkv("lock", "--addr", addr, "jobs/x")
    assert usage.returncode == 2 and usage.stderr.count("\n") == 1


def test_sessions_lock_cli_stops_the_command_when_the_lock_is_lost(cluster, tmp_path):
    addr = cluster.nodes[0].http
    c = client(cluster.nodes[0])
    marker = tmp_path / "started"
    child = f"import time, pathlib; pathlib.Path({str(marker)!r}).touch(); time.sleep(120)"
    proc = subprocess.Popen([sys.executable, "-m", "api.cli", "lock", "--addr", addr, "--lock-delay", "0",
                             "--kill-after", "2", "jobs/lost", "--", sys.executable, "-c", child],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_until("the command to run under the lock", marker.exists, 30)
        sid = holder(c, "jobs/lost/.lock")
        assert sid is not None
        c.session.destroy(sid)  # as the leader's expiry would: the lock is gone
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 1 and "lost jobs/lost/.lock" in err and err.count("\n") == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_sessions_lock_cli_second_holder_waits_for_the_first(cluster, tmp_path):
    addr = ",".join(n.http for n in cluster.nodes)
    started, go = tmp_path / "a-started", tmp_path / "go"
    first_child = (f"import os, pathlib, time\n"
                   f"pathlib.Path({str(started)!r}).write_text(os.environ['RAFTKV_LOCK_INDEX'])\n"
                   f"for _ in range(300):\n    if pathlib.Path({str(go)!r}).exists(): break\n    time.sleep(0.1)")
    second_child = "import os; print(os.environ['RAFTKV_LOCK_INDEX'])"
    lock = [sys.executable, "-m", "api.cli", "lock", "--addr", addr, "jobs/queue", "--"]
    first = subprocess.Popen([*lock, sys.executable, "-c", first_child], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    second = None
    try:
        first_token = int(wait_until("the first holder to run", lambda: started.exists() and started.read_text(), 30))
        second = subprocess.Popen([*lock, sys.executable, "-c", second_child], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        time.sleep(1.5)  # not synchronisation: the second must still be waiting for the lock
        assert second.poll() is None
        go.touch()
        assert first.wait(30) == 0
        out, err = second.communicate(timeout=30)
        assert second.returncode == 0, err
        assert int(out) == first_token + 1
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.communicate()
