"""An ASGI server that sends no lifespan: the start-up runs on the first request; if it
fails, every request is refused with 500 (the real server's side is in
tests/integration/test_asgi_no_lifespan.py)."""

from __future__ import annotations

import logging

import pytest

from gobstopper import Gobstopper, WebSocket
from gobstopper.testing import AsyncTestClient, WebSocketDenied


def make_app(fail: bool = False) -> tuple[Gobstopper, list[str]]:
    app = Gobstopper(environ={})
    started: list[str] = []

    @app.on_startup
    async def begin() -> None:
        started.append("startup")
        if fail:
            raise RuntimeError("no database")

    @app.get("/")
    async def index() -> str:
        return "ok"

    @app.websocket("/ws")
    async def ws_route(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_text("hello")

    return app, started


async def test_the_first_request_runs_the_startup_once(caplog: pytest.LogCaptureFixture) -> None:
    app, started = make_app()
    with caplog.at_level(logging.WARNING, logger="gobstopper"):
        async with AsyncTestClient(app, lifespan=False) as client:
            assert started == []
            assert (await client.get("/")).text == "ok"
            async with client.websocket_connect("/ws") as ws:
                assert await ws.receive_text() == "hello"
            assert (await client.get("/")).status == 200
    assert started == ["startup"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "shutdown hooks will NOT run" in warnings[0]


async def test_a_failed_late_startup_refuses_every_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app, started = make_app(fail=True)
    with caplog.at_level(logging.WARNING, logger="gobstopper"):
        async with AsyncTestClient(app, lifespan=False) as client:
            for _ in range(2):
                answer = await client.get("/")
                assert answer.status == 500
                assert "start-up failed" in answer.text
            with pytest.raises(WebSocketDenied) as denied:
                async with client.websocket_connect("/ws"):
                    pass
            assert denied.value.status == 500
    assert started == ["startup"]  # tried once, not on every request
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "no database" in str(errors[0].exc_info)


async def test_with_a_lifespan_nothing_runs_late(caplog: pytest.LogCaptureFixture) -> None:
    app, started = make_app()
    with caplog.at_level(logging.WARNING, logger="gobstopper"):
        async with AsyncTestClient(app) as client:
            assert started == ["startup"]
            assert (await client.get("/")).text == "ok"
    assert started == ["startup"]
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_a_lifespan_after_a_late_start_does_not_start_again() -> None:
    # Started by a request without lifespan, then served again with one (the same app
    # object): the startup hooks ran once, not twice without a shutdown between.
    app, started = make_app()
    async with AsyncTestClient(app, lifespan=False) as client:
        assert (await client.get("/")).status == 200
    async with AsyncTestClient(app) as client:
        assert (await client.get("/")).status == 200
    assert started == ["startup"]
