"""The log formats (api/logs.py): JSON lines with structured fields and exceptions as one field."""

from __future__ import annotations

import json
import logging

from api.logs import JsonFormatter


def record(msg: str, *args, exc: BaseException | None = None, **extra) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    rec = logging.LogRecord("node.raft", logging.WARNING, __file__, 1, msg, args, exc_info)
    for k, v in extra.items():
        setattr(rec, k, v)
    return rec


def test_json_log_line_has_ts_level_logger_msg_and_structured_fields():
    line = JsonFormatter().format(record("leader: %s in term %d", "a:1", 7, term=7, leader="a:1"))
    doc = json.loads(line)
    assert doc["level"] == "WARNING" and doc["logger"] == "node.raft" and doc["msg"] == "leader: a:1 in term 7"
    assert doc["term"] == 7 and doc["leader"] == "a:1"
    assert doc["ts"].endswith("Z") and doc["ts"][10] == "T"


def test_json_log_line_keeps_an_exception_and_odd_text_on_one_line():
    try:
        raise ValueError("bad\nthing")
    except ValueError as exc:
        line = JsonFormatter().format(record("failed\u2028twice\n%s", "x", exc=exc, path=object()))
    assert "\n" not in line and "\u2028" not in line and len(line.splitlines()) == 1
    doc = json.loads(line)
    assert doc["msg"] == "failed\u2028twice\nx"
    assert doc["exc"].startswith("Traceback") and "ValueError: bad\nthing" in doc["exc"]
    assert doc["path"].startswith("<object object")  # anything not JSON becomes its str()
