"""The parser benchmark (loadtest/bench/http_parse.py) compares like with like: every httptools
variant reads each shape as the lean front does, the framed drop-in hands off what the lean
front hands off, and a run prints and writes a figure for every variant."""

from __future__ import annotations

import json

import pytest

from loadtest.bench import http_parse

NOT_LEAN = [
    b"PUT /v1/kv/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nv\r\n0\r\n\r\n",
    b"PUT /v1/kv/a HTTP/1.0\r\nHost: x\r\nContent-Length: 1\r\n\r\nv",
    b"GET /v1/kv/a?recurse HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /v1/kv/a HTTP/1.1\r\n\r\n",  # no Host
    b"PUT /v1/kv/a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nv",
    b"POST /v1/kv/a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nv",
    b"GET /v1/agent/self HTTP/1.1\r\nHost: x\r\n\r\n",
]


@pytest.mark.parametrize("data", list(http_parse.SHAPES.values()), ids=list(http_parse.SHAPES))
def test_every_variant_reads_a_lean_request_as_the_lean_front_does(data):
    lean = http_parse.lean_parser()(data)
    assert lean is not None and lean.body == data.partition(b"\r\n\r\n")[2]
    for variant in (http_parse.httptools_per_request, http_parse.httptools_framed(),
                    http_parse.httptools_per_connection()):
        assert http_parse.same_request(lean, variant(data))


def test_requests_that_differ_are_told_apart():
    a, b = (http_parse.lean_parser()(data) for data in list(http_parse.SHAPES.values())[:2])
    assert not http_parse.same_request(a, b)
    assert not http_parse.same_request(a, None)


@pytest.mark.parametrize("data", NOT_LEAN)
def test_the_framed_drop_in_hands_off_what_the_lean_front_hands_off(data):
    lean = http_parse.lean_parser()
    assert lean(data) is None  # handed off (to no aiohttp here)
    assert http_parse.httptools_framed()(data) is None


def test_a_run_prints_and_writes_a_figure_for_every_shape_and_variant(tmp_path, capsys):
    out = tmp_path / "parse.json"
    assert http_parse.main(["--requests", "50", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert [row["shape"] for row in doc["rows"]] == list(http_parse.SHAPES)
    for row in doc["rows"]:
        figures = {k: v for k, v in row.items() if k not in ("shape", "bytes")}
        assert len(figures) == 5 and all(v > 0 for v in figures.values())
    printed = capsys.readouterr().out
    assert "httptools, framed as the lean front needs" in printed and "PUT, as py-consul sends it" in printed


def test_a_run_of_no_requests_is_refused(capsys):
    assert http_parse.main(["--requests", "0"]) == 2
    assert "at least 1" in capsys.readouterr().err
