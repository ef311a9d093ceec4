"""The console on a cluster with ACLs on (--acl deny): it asks for a token in a modal dialog,
refuses a wrong one, and shows the cluster with the right one. The token lives in the page's
memory: never in a URL, never in the browser's storage."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from tests.support.cluster import Cluster
from tests.support.wait import wait_until

TOKEN = "console-mgmt-0123456789"


@pytest.fixture(scope="module")
def acl_cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("console-acl")
    secret = root / "mgmt.token"
    secret.write_text(TOKEN + "\n")
    c = Cluster(str(root), extra_args=["--acl", "deny", "--acl-initial-management-token-file", str(secret)]).start()
    try:
        node = c.nodes[0]
        wait_until("the initial management token", lambda: _status(node) == 200, 30, explain=c.logs)
        yield c
    finally:
        c.stop()


def _status(node) -> int:
    req = urllib.request.Request(f"{node.url}/v1/raftkv/status", headers={"X-Consul-Token": TOKEN})
    try:
        with urllib.request.urlopen(req, timeout=2) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def test_the_token_prompt_refuses_a_wrong_token_and_takes_the_right_one(acl_cluster, page, screenshot):
    urls = []
    page.on("request", lambda r: urls.append(r.url))
    page.goto(f"{acl_cluster.nodes[0].url}/ui/")
    dialog = page.locator("dialog#token-dialog[open]")
    dialog.wait_for(timeout=10_000)
    assert page.evaluate("() => document.activeElement.id") == "token-input"  # focus moved into the dialog
    screenshot(page, "console-token-prompt")
    page.fill("#token-input", "not-the-token")
    page.keyboard.press("Enter")
    page.wait_for_selector("#retry-token", timeout=10_000)  # refused: the page says a token is needed
    assert page.inner_text("#conn") == "token needed"
    assert page.locator("#nodes tbody tr").count() == 0
    page.click("#retry-token")
    dialog.wait_for()
    page.keyboard.press("Escape")  # Esc cancels
    page.wait_for_selector("dialog#token-dialog", state="detached")
    page.click("#retry-token")
    dialog.wait_for()
    page.fill("#token-input", TOKEN)
    page.click("dialog button[type=submit]")
    page.wait_for_function("() => document.querySelectorAll('#nodes tbody tr').length === 3", timeout=15_000)
    assert page.locator("#nodes tr[data-role=leader]").count() == 1
    assert all(TOKEN not in u for u in urls)
    assert page.evaluate("() => localStorage.length + sessionStorage.length") == 0
    assert TOKEN not in page.evaluate("() => document.cookie")
