"""Every example runs as the docs say and does what they claim."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from .helpers import http_request
from .servers import ROOT, Server, granian_command, start


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


async def test_readme_example_runs_as_written(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    code = readme.split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "readme_app.py").write_text(code)
    server = start(
        "",
        "rsgi",
        command=granian_command("readme_app:app", "rsgi", 0),  # the port is filled in
        cwd=tmp_path,
    )
    try:
        async with connect(f"{server.ws}/ws/chat/lobby") as ws:
            await ws.send("hi")
            assert await ws.recv() == "[lobby] hi"
    finally:
        server.stop()
