"""Slow and idle clients, over real sockets: a connection that does not deliver its request's headers (or its body)
in time gets a 408 and is closed; beyond API_MAX_CONNECTIONS a new connection gets a 503 at once."""

import asyncio
import json
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest

from api.auth import Role
from tests.api_harness import Api, serve
from tests.service_process import sample

pytestmark = pytest.mark.integration
LIMIT_S = 1.0


@pytest.fixture
async def strict_api(database_url: str) -> AsyncIterator[Api]:
    async with serve(database_url, api_header_timeout=LIMIT_S, api_body_timeout=LIMIT_S) as api:
        yield api


async def open_socket(api: Api) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    address = urlsplit(api.url)
    return await asyncio.open_connection(address.hostname, address.port)


async def trickle(writer: asyncio.StreamWriter, data: bytes, every: float) -> None:
    """Sends `data` a byte at a time, `every` seconds apart, until it is sent or the server closes."""
    for byte in data:
        if writer.is_closing():
            return
        writer.write(bytes([byte]))
        try:
            await writer.drain()
        except ConnectionError:
            return
        await asyncio.sleep(every)


async def answer_and_close(reader: asyncio.StreamReader, within: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took."""
    started = time.monotonic()
    try:
        data = await asyncio.wait_for(reader.read(), within)
    except ConnectionResetError:
        data = b""
    return data, time.monotonic() - started


def problem(answer: bytes) -> tuple[int, dict[str, object]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"application/problem+json" in head, answer
    return int(head.split()[1]), json.loads(body)


@pytest.mark.parametrize(
    "what, sends",
    [
        ("nothing", b""),
        ("headers, a byte at a time", b"GET /balances HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 50 + b"\r\n\r\n"),
    ],
)
async def test_a_connection_that_does_not_send_its_headers_in_time_gets_408_and_is_closed(
    strict_api: Api, what: str, sends: bytes
) -> None:
    reader, writer = await open_socket(strict_api)
    sending = asyncio.create_task(trickle(writer, sends, 0.2))
    answer, took = await answer_and_close(reader, within=10 * LIMIT_S)
    sending.cancel()
    writer.close()
    status, body = problem(answer)
    assert status == 408 and body["type"] == "/problems/request-timeout", body
    assert "headers" in str(body["detail"]) and LIMIT_S * 0.9 <= took < LIMIT_S + 3, took
    cut = sample("warehouse_api_connections_cut_total", (await strict_api.metrics()).text, reason="headers")
    assert cut == 1


@pytest.mark.parametrize("role", [Role.operator, None])
async def test_a_body_sent_a_byte_at_a_time_is_cut_off(strict_api: Api, role: Role | None) -> None:
    """With a key the app waits for the body: 408 once API_BODY_TIMEOUT passes. Without one the 401 is sent at
    once; the trickle that follows is then an idle connection's, closed within API_HEADER_TIMEOUT."""
    reader, writer = await open_socket(strict_api)
    auth = f"Authorization: Bearer {strict_api.keys[role]}\r\n" if role else ""
    head = (
        f"POST /operations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 60000\r\n{auth}\r\n"
    )
    writer.write(head.encode())
    sending = asyncio.create_task(trickle(writer, b"{" + b" " * 59_999, 0.2))
    answer, took = await answer_and_close(reader, within=10 * LIMIT_S)
    sending.cancel()
    writer.close()
    status, body = problem(answer)
    if role:
        assert status == 408 and "body" in str(body["detail"]), body
    else:
        assert status == 401, body
    assert took < LIMIT_S + 3, took


async def test_beyond_the_connection_limit_a_new_connection_gets_503_at_once(database_url: str) -> None:
    async with serve(database_url, api_max_connections=3, api_header_timeout=60) as api:
        held = [await open_socket(api) for _ in range(3)]
        reader, writer = await open_socket(api)
        answer, took = await answer_and_close(reader, within=5)
        status, body = problem(answer)
        assert status == 503 and body["type"] == "/problems/too-many-connections", body
        assert b"retry-after: 1" in answer.lower() and took < 2, took
        writer.close()
        assert sample("warehouse_api_connections_cut_total", (await api.metrics()).text, reason="too_many") == 1

        held.pop()[1].close()
        await asyncio.sleep(0.2)  # the server sees the close
        r = await api.get("/healthz")
        assert r.status_code == 200
        for _, w in held:
            w.close()


async def test_a_kept_alive_connection_that_trickles_its_next_request_is_closed(strict_api: Api) -> None:
    """uvicorn's keep-alive timer stops at the first byte of the next request; the header deadline does not."""
    reader, writer = await open_socket(strict_api)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    first = await asyncio.wait_for(reader.readuntil(b'{"status":"ok"'), 5)
    assert first.startswith(b"HTTP/1.1 200")
    await reader.readuntil(b"}")
    sending = asyncio.create_task(trickle(writer, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 50, 0.2))
    rest, took = await answer_and_close(reader, within=10 * LIMIT_S)
    sending.cancel()
    writer.close()
    assert rest == b"" and took < LIMIT_S + 3, (rest, took)


async def test_a_body_finished_after_an_early_answer_does_not_stop_the_deadline(strict_api: Api) -> None:
    """The 401 goes out before the body is read; the body's end must not disarm the idle connection's deadline."""
    reader, writer = await open_socket(strict_api)
    writer.write(b"POST /operations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\n")
    first = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert first.startswith(b"HTTP/1.1 401")
    writer.write(b"{}   ")  # the body, complete, then silence
    await writer.drain()
    rest, took = await answer_and_close(reader, within=10 * LIMIT_S)
    writer.close()
    assert took < LIMIT_S + 3, (rest, took)


async def test_pipelined_requests_are_each_answered_and_none_gets_a_408(strict_api: Api) -> None:
    reader, writer = await open_socket(strict_api)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 3)
    await writer.drain()
    answers, _ = await answer_and_close(reader, within=10 * LIMIT_S)
    writer.close()
    assert answers.count(b"HTTP/1.1 200 OK") == 3 and b"408" not in answers, answers
