"""The request body limit (HTTP_MAX_BODY_BYTES) under real granian servers: a body over
it is answered 413 while the client is still sending, and the server's memory does not
grow by the body's size."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from .helpers import WAIT, http_request
from .servers import Server, start

MiB = 1024 * 1024
HUGE = 20 * MiB
# The worker's peak memory may grow by buffers and allocator slack, never by anything
# near the body's 20 MiB.
SLACK_KIB = 8 * 1024


@pytest.fixture(scope="module", params=["rsgi", "asgi"])
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    """tests.apps.bodies under granian, with the default limit (1 MiB)."""
    srv = start("tests.apps.bodies:app", request.param)
    yield srv
    srv.stop()


async def post(port: int, path: str, size: int, *, chunked: bool) -> tuple[int, bytes]:
    """POST ``size`` bytes, 64 KiB at a time, stopping as soon as an answer comes.

    Returns:
        How many body bytes were sent, and the start of the answer (empty when the
        connection broke while sending before the answer could be read: asyncio drops
        what the socket received once a write fails).
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}"
    writer.write(f"POST {path} HTTP/1.1\r\nHost: test\r\n{framing}\r\n\r\n".encode())
    answer = asyncio.ensure_future(reader.read(4096))
    sent = 0
    try:
        while sent < size and not answer.done():
            piece = b"x" * min(64 * 1024, size - sent)
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            sent += len(piece)
            await asyncio.wait_for(writer.drain(), WAIT)
        if chunked and not answer.done():
            writer.write(b"0\r\n\r\n")
    except ConnectionError:
        pass  # the server answered and closed while we were still sending: expected
    try:
        return sent, await asyncio.wait_for(answer, WAIT)
    except ConnectionError:
        return sent, b""
    finally:
        writer.close()


async def peak_kib(server: Server) -> int:
    result = await http_request(server.port, "GET", "/memory")
    assert result.status == 200, result.body
    return int(result.json()["VmHWM"])


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_a_huge_body_is_refused_while_it_is_sent(server: Server, chunked: bool) -> None:
    before = await peak_kib(server)
    sent, answer = await post(server.port, "/upload", HUGE, chunked=chunked)
    if answer:  # a client that keeps writing may see the connection broken instead
        assert answer.startswith(b"HTTP/1.1 413"), answer
        assert b"over the limit of 1048576 bytes" in answer
    # Answered or broken before the client had sent it all: the server stopped reading.
    assert sent < HUGE
    grown = await peak_kib(server) - before
    assert grown < SLACK_KIB, f"the worker's peak memory grew by {grown} KiB"


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_a_body_at_the_limit_passes(server: Server, chunked: bool) -> None:
    _, answer = await post(server.port, "/upload", MiB, chunked=chunked)
    assert answer.startswith(b"HTTP/1.1 200"), answer
    assert answer.endswith(b'{"bytes":1048576}')


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_one_byte_over_is_refused(server: Server, chunked: bool) -> None:
    _, answer = await post(server.port, "/upload", MiB + 1, chunked=chunked)
    # Refused: a 413, or (the client still writing when the server closed) a broken
    # connection; never taken (a 200).
    assert answer == b"" or answer.startswith(b"HTTP/1.1 413"), answer


async def test_a_route_may_take_more(server: Server) -> None:
    result = await http_request(server.port, "POST", "/upload/large", b"x" * (3 * MiB))
    assert (result.status, result.json()) == (200, {"bytes": 3 * MiB})


async def test_the_limit_comes_from_the_environment() -> None:
    srv = start("tests.apps.bodies:app", "rsgi", {"HTTP_MAX_BODY_BYTES": "1000"})
    try:
        ok = await http_request(srv.port, "POST", "/upload", b"x" * 1000)
        assert (ok.status, ok.json()) == (200, {"bytes": 1000})
        refused = await http_request(srv.port, "POST", "/upload", b"x" * 1001)
        assert refused.status == 413
        assert b"over the limit of 1000 bytes" in refused.body
    finally:
        srv.stop()


def test_a_bad_limit_stops_the_server() -> None:
    with pytest.raises(RuntimeError) as failed:
        start("tests.apps.bodies:app", "rsgi", {"HTTP_MAX_BODY_BYTES": "1MB"})
    assert "HTTP_MAX_BODY_BYTES='1MB'" in str(failed.value)
