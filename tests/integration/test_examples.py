"""Every example runs as the docs say and does what they claim."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from websockets.asyncio.client import connect

from .helpers import http_request
from .servers import Server, start


@pytest.fixture(scope="module", params=["rsgi", "asgi"])
def echo_server(request: pytest.FixtureRequest) -> Iterator[Server]:
    server = start("examples.echo:app", request.param)
    yield server
    server.stop()


async def test_echo_example(echo_server: Server) -> None:
    async with connect(f"{echo_server.ws}/ws/echo") as ws:
        await ws.send("hello")
        assert await ws.recv() == "hello"
        await ws.send(b"\x00bin")
        assert await ws.recv() == b"\x00bin"
    page = await http_request(echo_server.port, "GET", "/")
    assert page.status == 200 and b"new WebSocket(" in page.body and b"/ws/echo" in page.body
    health = await http_request(echo_server.port, "GET", "/health")
    assert health.json() == {"status": "ok"}
