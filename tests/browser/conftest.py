"""The web console in a real browser: Playwright for Python driving Debian's chromium
(/usr/bin/chromium, never a downloaded browser) against real node processes.

Fixtures: `browser` (one chromium per module; the tests skip, saying why, when Playwright or
chromium is missing: `.ci/run` installs chromium when it can), `console_cluster` (a 3-node
cluster per module, taking snapshots every 20 entries so the operations view has files to
list), `page` (1280x800, collecting the page's errors: a Content-Security-Policy violation or
an uncaught exception fails the test) and `screenshot(page, name)`, which keeps a PNG in
tests/browser/artifacts/ (git-ignored; CI may keep them).
"""

from __future__ import annotations

import os
import shutil

import pytest

from tests.support.cluster import Cluster

CHROMIUM = os.environ.get("RAFTKV_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = os.path.join(os.path.dirname(__file__), "artifacts")


@pytest.fixture(scope="module")
def browser():
    # Per module, not per session: a running sync Playwright holds an asyncio loop in this thread,
    # and the asyncio tests a worker runs next could not start theirs.
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[test]')")
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        pytest.skip(f"no chromium at {CHROMIUM} (Debian: apt-get install chromium; .ci/run does when root)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def console_cluster(tmp_path_factory):
    c = Cluster(str(tmp_path_factory.mktemp("console")), extra_args=["--snapshot-entries", "20"]).start()
    try:
        c.leader()
        yield c
    finally:
        c.stop()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    p = context.new_page()
    p.errors = []  # what the page itself got wrong: checked after the test
    p.on("pageerror", lambda exc: p.errors.append(f"uncaught: {exc}"))
    p.on("console", lambda m: p.errors.append(m.text) if m.type == "error" and "Content Security Policy" in m.text
         else None)
    try:
        yield p
        assert not p.errors, p.errors
    finally:
        context.close()


@pytest.fixture
def screenshot():
    def take(page, name: str) -> str:
        os.makedirs(ARTIFACTS, exist_ok=True)
        path = os.path.join(ARTIFACTS, f"{name}.png")
        page.screenshot(path=path, full_page=True)
        return path
    return take
