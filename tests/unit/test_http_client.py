import aiohttp

from api.http_client import client_session


async def test_client_session_turns_off_aiohttp_retries():
    probe = aiohttp.ClientSession()
    try:
        assert probe._retry_connection is True, "aiohttp renamed its retry switch: re-check api/http_client.py"
    finally:
        await probe.close()
    session = client_session()
    try:
        assert session._retry_connection is False
    finally:
        await session.close()
