"""The console over HTTPS: the page, its event stream and the node's calls to its peers (to
fill every row) all over TLS. The browser does not know the test's CA, so it is told to accept
the certificate; what is tested is that nothing of the console needs plain HTTP."""

from __future__ import annotations

import ssl

import pytest

from tests.support.certs import Pki
from tests.support.cluster import Cluster


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory):
    folder = tmp_path_factory.mktemp("console-tls")
    pki = Pki(folder / "pki")
    node = pki.issue("node")
    c = Cluster(str(folder / "c"), client_ssl=ssl.create_default_context(cafile=pki.ca),
                extra_args=["--tls-cert-file", node.cert, "--tls-key-file", node.key, "--tls-ca-file", pki.ca]).start()
    try:
        c.leader(timeout=30)
        yield c
    finally:
        c.stop()


def test_the_cluster_view_works_over_https(tls_cluster, browser):
    context = browser.new_context(viewport={"width": 1280, "height": 800}, ignore_https_errors=True)
    try:
        page = context.new_page()
        insecure = []
        page.on("request", lambda r: insecure.append(r.url) if not r.url.startswith(("https:", "data:")) else None)
        url = tls_cluster.nodes[0].url
        assert url.startswith("https://")
        page.goto(f"{url}/ui/")
        page.wait_for_function("() => document.querySelectorAll('#nodes tr[data-role=follower]').length === 2"
                               " && document.querySelectorAll('#nodes tr[data-role=leader]').length === 1",
                               timeout=15_000)
        assert page.inner_text("#conn") == "live" and not insecure
    finally:
        context.close()
