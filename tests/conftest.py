"""Fixtures shared by every test folder, and the rule that lets heavy tests run alone.

The suite runs on two pytest-xdist workers (pyproject.toml). A test marked `alone` measures
timing or load (thousands of connections, chaos with deadlines) and failed when the other
worker's cluster took the CPU from it; it now runs while no other test runs: every test holds
a shared lock on one file while it runs, an `alone` test holds it exclusively. A second file,
the turnstile, is held by a waiting `alone` test so that the other worker cannot keep it
waiting by taking one shared turn after another. In a run without workers (`-n 0`,
`-p no:xdist`) tests run one at a time anyway and no lock is taken.
"""

from __future__ import annotations

import fcntl
import os

import pytest

from tests.support.cluster import Cluster

WORKERS = 2  # CI's machine has two cores; the nodes of a cluster mostly wait on timers and the network


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config):
    """Two xdist workers, one test module per worker at a time (module-scoped clusters stay on
    one worker), unless the command line chose (`-n 0`, `-n 4`, `--dist load`) or xdist is off
    (`-p no:xdist`). Not in addopts: `-n` there would make `-p no:xdist` an error."""
    if not config.pluginmanager.hasplugin("xdist") or hasattr(config, "workerinput"):
        return
    if config.option.numprocesses is None and not config.option.usepdb:
        config.option.numprocesses = WORKERS
        if config.option.dist == "no":
            config.option.dist = "loadfile"


@pytest.fixture(autouse=True)
def _alone_or_alongside(request, tmp_path_factory):
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        yield
        return
    shared = tmp_path_factory.getbasetemp().parent  # the run's folder, common to its workers
    alone = request.node.get_closest_marker("alone") is not None
    with open(shared / "turnstile.lock", "a") as turnstile, open(shared / "alone.lock", "a") as lock:
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        if alone:
            fcntl.flock(lock, fcntl.LOCK_EX)
            fcntl.flock(turnstile, fcntl.LOCK_UN)
        else:
            fcntl.flock(turnstile, fcntl.LOCK_UN)
            fcntl.flock(lock, fcntl.LOCK_SH)
        yield  # closing the files releases the locks


@pytest.fixture
def cluster(tmp_path):
    """A fresh running 3-node cluster, stopped afterwards: for tests that kill, pause or
    reconfigure nodes."""
    c = Cluster(str(tmp_path)).start()
    try:
        c.leader()
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory):
    """One running 3-node cluster for all the tests of a module that leave it as they found it:
    no kills, pauses or membership changes, and keys of their own."""
    c = Cluster(str(tmp_path_factory.mktemp("shared"))).start()
    try:
        c.leader()
        yield c
    finally:
        c.stop()
