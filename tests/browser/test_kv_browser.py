"""The console's KV browser (api/ui/static/kv.js) in Debian's chromium, driven by Playwright,
against a real 3-node cluster. The page is served by a follower (so its reads and writes are
forwarded or carried to the leader); every change made in the page is checked by reading it
over HTTP from ANOTHER node, and changes made behind the page's back go through a third.

The browser and page come from tests/browser/conftest.py; the clusters are this module's own.
Screenshots go to tests/browser/artifacts/ (git-ignored).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import urllib.parse

import pytest
import requests

from tests.support.cluster import Cluster
from tests.support.wait import wait_until

CHROMIUM = os.environ.get("RAFTKV_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "artifacts")

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
if not shutil.which(CHROMIUM):
    pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(str(tmp_path_factory.mktemp("uikv"))).start()
    try:
        c.leader(timeout=30)
        yield c
    finally:
        c.stop()


@pytest.fixture
def nodes(cluster):
    """(the node serving the page: a follower, the node the test reads from, the node it writes
    behind the page's back through)."""
    leader = cluster.leader()
    page_node, other = cluster.followers()
    return page_node, other, leader


@pytest.fixture
def page(page):
    """The conftest's page (one chromium per session: two sync Playwrights cannot run at once),
    with this module's shorter wait."""
    page.set_default_timeout(10_000)
    return page


def screenshot(pg, name: str) -> None:
    os.makedirs(ARTIFACTS, exist_ok=True)
    pg.screenshot(path=os.path.join(ARTIFACTS, f"kv-{name}.png"), full_page=True)


def get(node, key: str) -> dict | None:
    resp = requests.get(f"{node.url}/v1/kv/{key}", timeout=10)
    if resp.status_code == 404:
        return None
    resp.raise_for_status()
    entry = resp.json()[0]
    entry["Bytes"] = base64.b64decode(entry["Value"] or "")
    return entry


def put(node, key: str, value: bytes, **params) -> None:
    assert requests.put(f"{node.url}/v1/kv/{key}", data=value, params=params, timeout=10).json() is True


def keys(node, prefix: str) -> list[str]:
    resp = requests.get(f"{node.url}/v1/kv/{prefix}", params={"keys": ""}, timeout=10)
    return [] if resp.status_code == 404 else resp.json()


def txn_put(node, items: dict[str, bytes]) -> None:
    names = list(items)
    for i in range(0, len(names), 64):
        ops = [{"KV": {"Verb": "set", "Key": k, "Value": base64.b64encode(items[k]).decode()}} for k in names[i:i + 64]]
        assert requests.put(f"{node.url}/v1/txn", json=ops, timeout=10).status_code == 200


def open_kv(pg, node, route: str = "") -> None:
    pg.goto(f"{node.url}/ui/#/kv/{route}")
    pg.locator(".kv-tree").first.wait_for()


def status_text(pg) -> str:
    return pg.locator(".kv-status").inner_text()


def test_create_edit_conflict_and_delete_a_key_seen_from_another_node(page, nodes):
    page_node, other, behind = nodes
    open_kv(page, page_node, "web/")
    page.get_by_role("button", name="New key").click()
    page.get_by_label("Key", exact=True).fill("web/greeting")
    page.get_by_label("Value", exact=True).fill("hello")
    page.get_by_label("Flags", exact=True).fill("7")
    page.get_by_role("button", name="Save").click()
    page.locator(".kv-status.kv-ok").filter(has_text="Saved web/greeting").wait_for()
    created = get(other, "web/greeting")
    assert created["Bytes"] == b"hello" and created["Flags"] == 7
    page.locator('td[data-field="ModifyIndex"]').filter(has_text=str(created["ModifyIndex"])).wait_for()
    assert page.locator('.kv-tree a[data-key="web/greeting"]').count() == 1  # the tree shows the new key

    page.get_by_role("button", name="Edit").click()
    page.get_by_label("Value", exact=True).fill("hello again")
    page.get_by_role("button", name="Save").click()
    page.locator(".kv-value", has_text="hello again").wait_for()
    assert get(other, "web/greeting")["Bytes"] == b"hello again"

    # A conflicting edit: the key changes behind the page's back before the page saves.
    page.get_by_role("button", name="Edit").click()
    page.get_by_label("Value", exact=True).fill("mine")
    put(behind, "web/greeting", b"theirs")
    page.get_by_role("button", name="Save").click()
    conflict = page.locator(".kv-conflict")
    conflict.wait_for()
    assert conflict.locator(".kv-mine pre").inner_text() == "mine"
    assert conflict.locator(".kv-theirs pre").inner_text() == "theirs"
    screenshot(page, "conflict")
    assert get(other, "web/greeting")["Bytes"] == b"theirs"  # nothing was overwritten
    conflict.get_by_role("button", name="Save mine over it").click()  # the user's choice
    conflict.wait_for(state="detached")
    page.locator(".kv-value", has_text="mine").wait_for()
    assert get(other, "web/greeting")["Bytes"] == b"mine"

    # A creation that would overwrite a key someone else made meanwhile is a conflict too.
    page.get_by_role("button", name="New key").click()
    page.get_by_label("Key", exact=True).fill("web/greeting")
    page.get_by_label("Value", exact=True).fill("fresh")
    page.get_by_role("button", name="Save").click()
    page.locator(".kv-conflict").wait_for()
    assert get(other, "web/greeting")["Bytes"] == b"mine"
    page.get_by_role("button", name="Discard mine, show current").click()

    page.get_by_role("button", name="Delete…").click()
    dialog = page.get_by_role("dialog")
    assert "web/greeting" in dialog.inner_text()
    page.keyboard.press("Escape")  # the dialog is modal and Esc cancels it
    dialog.wait_for(state="detached")
    assert get(other, "web/greeting") is not None  # cancelled: still there
    page.get_by_role("button", name="Delete…").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    page.locator(".kv-status.kv-ok").filter(has_text="Deleted web/greeting").wait_for()
    assert get(other, "web/greeting") is None


def test_values_json_yaml_binary_large_with_download_and_lock_holder(page, nodes):
    page_node, other, _ = nodes
    put(other, "fmt/json", b'{"a":1,"big":18446744073709551615,"list":[true,null,"x"],"empty":{}}')
    put(other, "fmt/yaml", b"# settings\nserver:\n  port: 8080\n  hosts:\n    - a.example\n    - b.example\n")
    put(other, "fmt/bin", bytes(range(256)))
    large = (b"0123456789abcdef" * 4096 * 2)[: 100 * 1024]  # 100 KiB
    put(other, "fmt/large", large)
    put(other, "fmt/html", b"<img src=x onerror=alert(1)>")

    open_kv(page, page_node, "fmt/json")
    view = page.locator(".kv-value")
    view.wait_for()
    text = view.inner_text()
    assert '"a": 1,\n  "big": 18446744073709551615,' in text and '"empty": {}' in text  # exact number kept
    assert page.locator(".kv-value .tok-key").first.inner_text() == '"a"'
    stray = "Array.from(document.querySelector('.kv-detail').childNodes).filter(n => n.nodeType === 3).length"
    assert page.evaluate(stray) == 0  # no stray text (a "null") beside the parts of the view
    screenshot(page, "json")

    page.goto(f"{page_node.url}/ui/#/kv/fmt/yaml")
    page.locator(".badge", has_text="YAML").wait_for()
    assert page.locator(".kv-value .tok-key").all_inner_texts()[:2] == ["server", "port"]
    assert page.locator(".kv-value").inner_text().startswith("# settings\nserver:\n  port: 8080")

    page.goto(f"{page_node.url}/ui/#/kv/fmt/bin")
    page.locator(".badge", has_text="binary").wait_for()
    assert page.locator(".kv-value").inner_text().startswith("00000000  00 01 02 03")
    assert page.get_by_role("button", name="Edit").count() == 0

    page.goto(f"{page_node.url}/ui/#/kv/fmt/large")
    page.locator(".kv-warn", has_text="Showing the first 64 KiB of 102400 bytes").wait_for()
    assert len(page.locator(".kv-value").inner_text()) == 64 * 1024
    with page.expect_download() as info:
        page.get_by_role("button", name="Download").click()
    with open(info.value.path(), "rb") as f:
        assert f.read() == large
    assert "token" not in info.value.url  # a blob: URL made from a fetch, nothing in the address

    page.goto(f"{page_node.url}/ui/#/kv/fmt/html")
    page.locator(".kv-value").wait_for()
    assert page.locator(".kv-value").inner_text() == "<img src=x onerror=alert(1)>"
    assert page.locator(".kv-detail img").count() == 0  # shown as text, never as HTML

    session = requests.put(f"{other.url}/v1/session/create", json={"Name": "ui-lock-test"}, timeout=10).json()["ID"]
    assert requests.put(f"{other.url}/v1/kv/fmt/locked", data=b"held",
                        params={"acquire": session}, timeout=10).json() is True
    page.goto(f"{page_node.url}/ui/#/kv/fmt/locked")
    cell = page.locator('td[data-field="Session"]')
    cell.filter(has_text="lock holder: ui-lock-test on node").wait_for()
    assert session in cell.inner_text()
    assert page.locator('td[data-field="LockIndex"]').inner_text() == "1"


def test_export_recursive_delete_with_count_and_import_back(page, nodes, tmp_path):
    page_node, other, _ = nodes
    originals = {f"exp/k{i:03d}": f"value {i}".encode() for i in range(70)}
    originals["exp/sub/bin"] = bytes([0, 255, 10, 13])
    txn_put(other, originals)
    put(other, "exp/flagged", b"f", flags=42)
    originals["exp/flagged"] = b"f"
    put(other, "expired", b"outside the prefix")

    open_kv(page, page_node, "exp/")
    with page.expect_download() as info:
        page.get_by_role("button", name="Export prefix").click()
    with open(info.value.path(), "rb") as f:
        exported = json.loads(f.read())
    assert {e["key"] for e in exported} == set(originals) and len(exported) == 72
    assert all(set(e) == {"key", "flags", "value"} for e in exported)
    assert next(e for e in exported if e["key"] == "exp/flagged")["flags"] == 42
    export_file = tmp_path / "export.json"
    export_file.write_text(json.dumps(exported))

    page.get_by_role("button", name="Delete prefix…").click()
    dialog = page.get_by_role("dialog")
    assert "This deletes 72 keys under exp/." in dialog.inner_text()
    confirm = dialog.get_by_role("button", name="Delete 72 keys")
    assert confirm.is_disabled()
    dialog.get_by_label("Confirmation").fill("71")
    assert confirm.is_disabled()
    dialog.get_by_label("Confirmation").fill("72")
    screenshot(page, "recursive-delete")
    confirm.click()
    page.locator(".kv-status.kv-ok").filter(has_text="Deleted 72 keys under exp/").wait_for()
    assert keys(other, "exp/") == [] and get(other, "expired") is not None

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"key": "exp/new", "value": "aGk="}, {"key": "exp/worse", "value": "not base64!"}]))
    page.locator('input[type="file"]').set_input_files(str(bad))
    page.locator(".kv-status.kv-bad").filter(has_text="Import refused, nothing changed").wait_for()
    assert "entry 2 (exp/worse): \"value\" must be base64" in status_text(page)
    assert keys(other, "exp/") == []

    page.locator('input[type="file"]').set_input_files(str(export_file))
    page.get_by_role("dialog").get_by_role("button", name="Import 72 keys").click()
    page.locator(".kv-status.kv-ok").filter(has_text="Imported 72 keys in 2 transactions.").wait_for()
    screenshot(page, "imported")
    for key, value in originals.items():
        entry = get(other, key)
        assert entry is not None and entry["Bytes"] == value, key
    assert get(other, "exp/flagged")["Flags"] == 42

    page.locator('input[type="file"]').set_input_files(str(export_file))  # again, under another prefix
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Put before every key").fill("copy/")
    dialog.get_by_role("button", name="Import 72 keys").click()
    page.locator(".kv-status.kv-ok").filter(has_text="Imported 72 keys under copy/ in 2 transactions.").wait_for()
    assert sorted(keys(other, "copy/")) == sorted("copy/" + k for k in originals)


def test_tree_is_lazy_and_search_is_bounded_with_continue(page, nodes):
    page_node, other, _ = nodes
    txn_put(other, {f"srch/a/k{i:03d}": (b"needle" if i % 2 else b"hay") for i in range(240)})
    put(other, "srch/b/deep/x", b"needle in deep")

    open_kv(page, page_node, "srch/")
    tree = page.locator(".kv-list > .kv-tree")
    assert tree.locator(":scope > li").all_inner_texts() == ["▸a/", "▸b/"] or \
        [t.replace("\n", "") for t in tree.locator(":scope > li").all_inner_texts()] == ["▸a/", "▸b/"]
    page.get_by_role("button", name="Expand srch/b/").click()
    page.get_by_role("button", name="Expand srch/b/deep/").click()
    page.locator('a[data-key="srch/b/deep/x"]').click()
    page.locator(".kv-value", has_text="needle in deep").wait_for()
    assert page.url.endswith("#/kv/srch/b/deep/x")  # a deep link
    assert page.locator(".kv-crumbs").inner_text() == "(root) / srch / b / deep"

    page.goto(f"{page_node.url}/ui/#/kv/srch/")
    page.get_by_label("Value contains").fill("needle")
    page.get_by_role("button", name="Search").click()
    more = page.locator(".kv-more")
    more.filter(has_text="stopped early (limit)").wait_for()
    assert page.locator(".kv-results li.kv-leaf").count() == 100
    more.get_by_role("button", name="Continue").click()
    page.locator(".kv-more").filter(has_text="121 found").wait_for()  # 120 odd keys and srch/b/deep/x
    assert page.locator(".kv-more button").count() == 0
    screenshot(page, "search")
    page.locator('.kv-results a[data-key="srch/a/k239"]').click()
    page.locator(".kv-value", has_text="needle").wait_for()


def test_phone_width_and_keyboard(page, nodes):
    page_node, other, _ = nodes
    put(other, "phone/a-rather-long-key-name-that-should-wrap-instead-of-overflowing", b"v")
    page.set_viewport_size({"width": 390, "height": 844})
    open_kv(page, page_node, "phone/")
    page.keyboard.press("Tab")
    for _ in range(30):  # the key is reachable by keyboard alone
        if page.evaluate("document.activeElement.dataset.key || ''").startswith("phone/a-rather"):
            break
        page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.locator(".kv-value", has_text="v").wait_for()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(page, "phone")


@pytest.fixture(scope="module")
def acl_cluster(tmp_path_factory):
    """A cluster with ACLs on (default deny): tokens 'mgmt' and 'app' (write on app/, app/secret/ denied)."""
    c = Cluster(str(tmp_path_factory.mktemp("uikv-acl")), extra_args=["--acl", "deny"]).start()
    try:
        node = c.nodes[0]
        boot = wait_until("the ACL bootstrap", lambda: requests.put(f"{node.url}/v1/acl/bootstrap", timeout=5),
                          30, until=lambda r: r.status_code == 200, explain=c.logs)
        mgmt = {"X-Consul-Token": boot.json()["SecretID"]}
        rules = 'key_prefix "app/" { policy = "write" }\nkey_prefix "app/secret/" { policy = "deny" }'
        assert requests.put(f"{node.url}/v1/acl/policy", json={"Name": "app", "Rules": rules}, headers=mgmt,
                            timeout=10).status_code == 200
        app = requests.put(f"{node.url}/v1/acl/token", json={"Policies": [{"Name": "app"}]}, headers=mgmt,
                           timeout=10).json()["SecretID"]
        wait_until("the app token on every node", lambda: all(
            requests.get(f"{n.url}/v1/acl/token/self", headers={"X-Consul-Token": app}, timeout=5).status_code == 200
            for n in c.nodes), 30)
        for key, value in (("app/x", b"one"), ("app/y", b"needle y"), ("app/secret/k", b"needle secret"),
                           ("other", b"needle other")):
            assert requests.put(f"{node.url}/v1/kv/{key}", data=value, headers=mgmt, timeout=10).json() is True
        yield c, mgmt, app
    finally:
        c.stop()


def test_with_acls_the_page_takes_a_token_and_shows_only_what_it_may_read(browser, acl_cluster):
    c, mgmt, app = acl_cluster
    page_node, other = c.nodes[0], c.nodes[1]
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        pg = context.new_page()
        pg.goto(f"{page_node.url}/ui/#/kv/app/")
        note = pg.locator(".kv-token")
        note.wait_for()  # anonymous sees an empty listing: the page says why and takes a token
        assert pg.locator(".kv-tree").inner_text() == "(no keys)"
        note.get_by_label("ACL token").fill(app)
        note.get_by_role("button", name="Use token").click()
        pg.locator('a[data-key="app/x"]').wait_for()
        assert [a.get_attribute("data-key") for a in pg.locator(".kv-tree a[data-key]").all()] == ["app/x", "app/y"]
        assert pg.locator(".kv-token").count() == 0 and "secret" not in pg.locator(".kv-list").inner_text()
        pg.get_by_label("Value contains").fill("needle")
        pg.get_by_role("button", name="Search").click()
        pg.locator(".kv-more").filter(has_text="1 found").wait_for()
        pg.get_by_label("Key prefix").fill("")
        pg.get_by_role("button", name="Search").click()
        pg.locator(".kv-more").filter(has_text="1 found").wait_for()  # not app/secret/k, not other
        assert pg.locator(".kv-results a").all_inner_texts() == ["app/y"]
        screenshot(pg, "acl-search")

        pg2 = context.new_page()  # a new page has no token: a denied read asks for one (http.js), then retries
        pg2.goto(f"{page_node.url}/ui/#/kv/app/x")
        dialog = pg2.get_by_role("dialog")
        dialog.locator('input[type="password"]').fill(app)  # the console's prompt (http.js)
        dialog.get_by_role("button", name="Use token").click()
        pg2.locator(".kv-value", has_text="one").wait_for()
        pg2.get_by_role("button", name="Edit").click()
        pg2.get_by_label("Value", exact=True).fill("two")
        pg2.get_by_role("button", name="Save").click()
        pg2.locator(".kv-value", has_text="two").wait_for()
        got = requests.get(f"{other.url}/v1/kv/app/x?raw", headers=mgmt, timeout=10)
        assert got.content == b"two"
        assert "token" not in pg2.url.lower() and app not in pg2.url
    finally:
        context.close()


MALFORMED = [
    ("{not json", "not JSON"),
    ('{"key": "a"}', "not a kv export: the top level must be an array"),
    ("[1]", "entry 1: not an object"),
    ('[{"key": "a", "value": ""}, {"value": "aGk="}]', 'entry 2: "key" must be a non-empty string'),
    ('[{"key": "a\\nb", "value": ""}]', 'entry 1: "key" contains a newline or NUL'),
    ('[{"key": "' + "k" * 513 + '", "value": ""}]', 'entry 1: "key" is over 512 bytes'),
    ('[{"key": "a", "flags": -1, "value": ""}]', 'entry 1 (a): "flags" must be an unsigned integer'),
    ('[{"key": "a", "flags": "3", "value": ""}]', 'entry 1 (a): "flags" must be an unsigned integer'),
    ('[{"key": "a", "value": "aGk"}]', 'entry 1 (a): "value" must be base64'),
    ('[{"key": "a", "value": 5}]', 'entry 1 (a): "value" must be base64'),
]


def test_import_file_checks_name_the_first_problem(page, nodes):
    page_node, _, _ = nodes
    open_kv(page, page_node)
    messages = page.evaluate("""async (cases) => {
        const m = await import('./kv.js');
        return cases.map((text) => { try { m.parseExport(text); return 'accepted'; } catch (e) { return e.message; } });
    }""", [text for text, _ in MALFORMED])
    for (text, expected), got in zip(MALFORMED, messages, strict=True):
        assert got.startswith(expected), (text, got)
    ok = page.evaluate("""async () => (await import('./kv.js')).parseExport(
        '[{"key":"a","flags":3,"value":"aGk="},{"key":"b","value":null}]')""")
    assert ok == [{"key": "a", "flags": 3, "value": "aGk="}, {"key": "b", "flags": 0, "value": ""}]


def test_a_key_with_url_characters_opens_edits_and_deep_links(page, nodes):
    page_node, other, _ = nodes
    key = "odd/a b%20c?#&é"
    quoted = "odd/" + urllib.parse.quote(key[4:], safe="")
    put(other, quoted, b"odd value")
    open_kv(page, page_node, "odd/")
    page.locator(".kv-tree a").filter(has_text="a b%20c?#&é").click()
    page.locator(".kv-value", has_text="odd value").wait_for()
    assert page.locator(".kv-detail h2").inner_text() == key
    deep_link = page.url
    page.get_by_role("button", name="Edit").click()
    page.get_by_label("Value", exact=True).fill("edited")
    page.get_by_role("button", name="Save").click()
    page.locator(".kv-value", has_text="edited").wait_for()
    assert get(other, quoted)["Bytes"] == b"edited"
    page.goto("about:blank")
    page.goto(deep_link)  # the address opens the same key again
    page.locator(".kv-value", has_text="edited").wait_for()


def test_an_edit_keeps_flags_past_2_to_the_53(page, nodes):
    page_node, other, _ = nodes
    top = 2**64 - 1
    put(other, "flags/big", b"v1", flags=top)
    open_kv(page, page_node, "flags/big")
    page.locator('td[data-field="Flags"]', has_text=str(top)).wait_for()
    page.get_by_role("button", name="Edit").click()
    assert page.get_by_label("Flags", exact=True).input_value() == str(top)
    page.get_by_label("Value", exact=True).fill("v2")
    page.get_by_role("button", name="Save").click()
    page.locator(".kv-value", has_text="v2").wait_for()
    entry = get(other, "flags/big")
    assert entry["Bytes"] == b"v2" and entry["Flags"] == top
