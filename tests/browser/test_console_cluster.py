"""The console's cluster view and operations against a real 3-node cluster in chromium:
three nodes and one leader, a leader killed and its successor shown within seconds, the
snapshot list and a download, leadership handed over from the page."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

from snapshots import format as fmt


def put(node, key: str, value: str) -> None:
    req = urllib.request.Request(f"{node.url}/v1/kv/{key}", data=value.encode(), method="PUT")
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert json.loads(resp.read()) is True


def leader_row(page) -> str:
    """The node the page shows as leader (waits for one)."""
    page.wait_for_selector("#nodes tr[data-role=leader]", timeout=10_000)
    return page.get_attribute("#nodes tr[data-role=leader]", "data-node")


def test_the_cluster_view_shows_three_nodes_and_one_leader(console_cluster, page, screenshot):
    leader = console_cluster.leader()
    for i in range(45):  # some traffic for the charts, and two snapshots' worth of entries
        put(leader, f"console/k{i}", str(i))
    page.goto(f"{console_cluster.nodes[0].url}/ui/")
    shown = page.wait_for_function(
        "() => document.querySelectorAll('#nodes tbody tr').length === 3"
        " && document.querySelector('#nodes tr[data-role=leader]') && performance.now()").json_value()
    paint = page.evaluate("() => (performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime")
    nav = page.evaluate("() => performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd")
    print(f"console timings: first-contentful-paint {paint:.0f} ms, DOMContentLoaded {nav:.0f} ms, "
          f"3 nodes and the leader shown {shown:.0f} ms after navigation")
    assert page.locator("#nodes tr[data-role=leader]").count() == 1
    assert leader_row(page) == leader.node_id
    assert page.locator("#nodes tr.leader").count() == 1  # highlighted
    assert page.locator("#nodes td .badge.ok").count() == 3  # every node healthy
    assert page.inner_text("#conn") == "live"
    page.wait_for_selector("#timeline li[data-kind]")
    for i in range(120):  # through the page's node (forwarded to the leader): its own request chart
        put(console_cluster.nodes[0], f"console/more{i}", str(i))
        time.sleep(0.05)
    page.wait_for_timeout(2500)  # two pushes' worth of chart points, for the screenshot
    screenshot(page, "console-cluster")
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390  # no page-wide sideways scroll
    screenshot(page, "console-cluster-phone")
    page.set_viewport_size({"width": 1280, "height": 800})
    # Keyboard: the first Tab stops are the views' links, focus is visible, Enter follows one.
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.textContent") == "Cluster"
    assert page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle") != "none"
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.wait_for_selector("#view-ops:not([hidden]) #ops-snapshots")
    page.go_back()
    page.wait_for_selector("#view-cluster:not([hidden])")


def test_snapshots_are_listed_and_one_downloads(console_cluster, page, screenshot, tmp_path):
    node = console_cluster.nodes[0]
    page.goto(f"{node.url}/ui/#/ops")
    page.wait_for_selector("#snapshot-list tr[data-snapshot]", timeout=10_000)
    names = page.eval_on_selector_all("#snapshot-list tr[data-snapshot]", "rows => rows.map(r => r.dataset.snapshot)")
    assert names and all(n.startswith("snap-") and n.endswith(".rkvs") for n in names)
    with page.expect_download() as info:
        page.locator(f"#snapshot-list tr[data-snapshot='{names[0]}'] button").click()
    saved = tmp_path / "got.rkvs"
    info.value.save_as(saved)
    assert info.value.suggested_filename == names[0]
    header = fmt.verify(str(saved))  # a whole, valid snapshot file
    assert header.index == int(names[0].split("-")[1])
    screenshot(page, "console-ops")
    # The guarded restore: nothing happens until the cluster's ID is typed.
    put(console_cluster.leader(), "console/after-snapshot", "x")
    page.click("text=Restore from a snapshot file")
    page.set_input_files("#restore-file", str(saved))
    page.fill("#restore-confirm", "yes")
    page.click("text=Restore the whole cluster")
    page.wait_for_selector("#ops-snapshots .msg.bad:has-text('to confirm')")
    cluster_id = node.status()["cluster_id"]
    page.fill("#restore-confirm", cluster_id)
    page.click("text=Restore the whole cluster")
    page.wait_for_selector("#ops-snapshots .msg.ok:has-text('Restored')", timeout=20_000)
    assert page.inner_text("#ops-snapshots .msg.ok").startswith(f"Restored {header.key_count} keys")
    with pytest.raises(urllib.error.HTTPError):  # written after the snapshot: gone with the restore
        urllib.request.urlopen(f"{console_cluster.leader().url}/v1/kv/console/after-snapshot", timeout=5)


def test_leadership_is_transferred_from_the_page(console_cluster, page):
    leader = console_cluster.leader()
    target = next(n for n in console_cluster.nodes if n is not leader)
    page.goto(f"{target.url}/ui/#/ops")
    page.get_by_role("button", name=f"Make {target.node_id} leader").click()
    said = page.wait_for_selector("#members-msg .msg", timeout=20_000)  # the operator API's answer, good or bad
    assert "ok" in (said.get_attribute("class") or ""), said.inner_text()
    assert console_cluster.leader().node_id == target.node_id
    page.goto(f"{target.url}/ui/#/cluster")
    page.wait_for_function(f"() => document.querySelector('#nodes tr[data-role=leader]')?.dataset.node === "
                           f"'{target.node_id}'", timeout=10_000)


def test_a_killed_leader_is_replaced_on_the_page_within_seconds(console_cluster, page, screenshot):
    leader = console_cluster.leader()
    watcher = next(n for n in console_cluster.nodes if n is not leader)  # the page's node survives
    page.goto(f"{watcher.url}/ui/")
    assert leader_row(page) == leader.node_id
    leader.kill()
    killed = time.monotonic()
    try:
        page.wait_for_function(
            f"() => {{ const r = document.querySelector('#nodes tr[data-role=leader]');"
            f" return r && r.dataset.node !== '{leader.node_id}'; }}", timeout=15_000)
        seen_s = time.monotonic() - killed
        new = console_cluster.leader(among=[n for n in console_cluster.nodes if n is not leader])
        print(f"new leader {new.node_id} on the page {seen_s:.2f} s after SIGKILL of {leader.node_id}")
        assert leader_row(page) == new.node_id
        page.wait_for_selector(f"#nodes tr[data-node={leader.node_id}][data-role=down]", timeout=15_000)
        page.wait_for_selector("#timeline li[data-kind=leader]")
        screenshot(page, "console-failover")
    finally:
        leader.start()
    console_cluster.leader()
