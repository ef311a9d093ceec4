"""The commands' HTTP client: address forms, skipping unreachable nodes, one-line failures."""

import http.server
import socket
import threading

import pytest

from api.cli_http import ClientError, base_urls, failure, request


def test_address_forms():
    assert base_urls("127.0.0.1:8501") == ["http://127.0.0.1:8501"]
    assert base_urls("http://127.0.0.1:8501/") == ["http://127.0.0.1:8501"]
    assert base_urls("https://node:8501") == ["https://node:8501"]
    assert base_urls(" a:1, http://b:2 ,") == ["http://a:1", "http://b:2"]
    for bad in ("ftp://a:1", "http://a:1/v1/kv", "", " , "):
        with pytest.raises(ClientError):
            base_urls(bad)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Answer(http.server.BaseHTTPRequestHandler):
    hits = 0

    def do_PUT(self):  # noqa: N802 - http.server's naming
        type(self).hits += 1
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(500)
        self.send_header("Content-Length", "11")
        self.end_headers()
        self.wfile.write(b"boom\nmore\n\n")

    def log_message(self, *args):
        pass


def test_unreachable_nodes_are_skipped_but_an_answer_is_final():
    server = http.server.HTTPServer(("127.0.0.1", 0), _Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        live = f"127.0.0.1:{server.server_address[1]}"
        dead = f"127.0.0.1:{_closed_port()}"
        status, _, body = request(f"{dead},{live},{live}", "PUT", "/v1/kv/a", body=b"x")
        assert (status, body) == (500, b"boom\nmore\n\n")
        assert _Answer.hits == 1  # an error answer is not sent to the next node
        assert str(failure(status, body)) == "HTTP 500: boom"
        with pytest.raises(ClientError, match="cannot reach"):
            request(dead, "GET", "/v1/kv/a")
    finally:
        server.shutdown()
        server.server_close()


def test_a_refused_https_connection_is_not_blamed_on_a_missing_client_certificate():
    with pytest.raises(ClientError) as refused:
        request(f"https://127.0.0.1:{_closed_port()}", "GET", "/v1/kv/a")
    assert "cannot reach" in str(refused.value) and "client certificate" not in str(refused.value)
