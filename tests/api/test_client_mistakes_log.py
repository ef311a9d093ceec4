"""A malformed request is a client's mistake: a 400 and at most one log line, never a traceback
per request (found from outside: a NUL byte in a header made aiohttp log an ERROR each time)."""

import asyncio
import logging

from api.errors import ClientMistakeLogFilter
from tests.api.fake_node import FakeNode

NUL_HEADER = b"GET /v1/kv/a?recurse HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n"


async def send_raw(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    answer = await reader.read(4096)
    writer.close()
    await writer.wait_closed()
    return answer


async def test_malformed_requests_are_one_rate_limited_line_without_traceback(serve, caplog):
    client = await serve(FakeNode())
    server_log = logging.getLogger("aiohttp.server")
    log_filter = ClientMistakeLogFilter(every_s=3600)
    server_log.addFilter(log_filter)
    try:
        with caplog.at_level(logging.INFO, logger="aiohttp.server"):
            answers = [await send_raw(client.port, NUL_HEADER) for _ in range(5)]
    finally:
        server_log.removeFilter(log_filter)
    assert all(a.startswith(b"HTTP/1.") and b" 400 " in a.split(b"\r\n")[0] for a in answers), answers
    records = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert len(records) == 1, [r.getMessage() for r in records]  # five mistakes, one line
    (record,) = records
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert "malformed request" in record.getMessage() and "\n" not in record.getMessage()
    assert "Traceback" not in caplog.text
