"""The app's dispatch, driven in-process through its ASGI entry point (no sockets), with
the test kit where it fits."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gobstopper import Gobstopper, HTTPError, Request, Response, WebSocket
from gobstopper.testing import AsyncTestClient, WebSocketDenied


async def test_http_errors_and_bodies() -> None:
    app = Gobstopper(environ={})

    @app.post("/json")
    async def takes_json(request: Request) -> dict[str, Any]:
        return {"got": await request.json()}

    @app.get("/missing-room")
    async def missing() -> None:
        raise HTTPError(404, "no such room")

    @app.get("/empty")
    async def empty() -> None:
        return None

    @app.get("/csv")
    async def csv() -> Response:
        return Response("a,b\n", headers={"Content-Type": "text/csv"})

    @app.get("/teapot")
    async def teapot() -> Response:
        return Response(b"short and stout", status=418, media_type="text/plain")

    async with AsyncTestClient(app) as client:
        ok = await client.post("/json", body=b'{"a": 1}')
        assert ok.status == 200 and ok.json() == {"got": {"a": 1}}
        bad = await client.post("/json", body=b"{nope")
        assert (bad.status, bad.body) == (400, b"request body is not valid JSON")
        gone = await client.get("/missing-room")
        assert (gone.status, gone.body) == (404, b"no such room")
        empty_resp = await client.get("/empty")
        assert empty_resp.status == 204 and "content-type" not in empty_resp.headers
        csv_resp = await client.get("/csv")
        assert csv_resp.headers["content-type"] == "text/csv"  # one, not two joined
        tea = await client.get("/teapot")
        assert (tea.status, tea.headers["content-type"]) == (418, "text/plain; charset=utf-8")


async def test_cancelled_handler_closes_going_away() -> None:
    app = Gobstopper(environ={})
    entered = asyncio.Event()

    @app.websocket("/ws")
    async def forever(ws: WebSocket) -> None:
        await ws.accept()
        entered.set()
        await asyncio.Event().wait()

    scope = {"type": "websocket", "path": "/ws", "query_string": b"", "headers": []}
    incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    incoming.put_nowait({"type": "websocket.connect"})
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    task = asyncio.ensure_future(app(scope, incoming.get, send))
    await asyncio.wait_for(entered.wait(), 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sent[0]["type"] == "websocket.accept"
    assert sent[-1] == {"type": "websocket.close", "code": 1001, "reason": ""}
    assert not app.connections


async def test_connection_events_are_logged_once_each_without_tracebacks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = Gobstopper(environ={}, allowed_origins=["https://ok.example"])

    @app.websocket("/ws")
    async def echo(ws: WebSocket) -> None:
        await ws.accept()
        async for message in ws:
            await ws.send_text(message.text)

    caplog.set_level("INFO", "gobstopper.access")
    async with AsyncTestClient(app, client_host="10.0.0.1") as client:
        with pytest.raises(WebSocketDenied) as refused:
            await client.websocket_connect(
                "/ws", headers={"origin": "https://evil.example"}
            ).connect()
        assert refused.value.status == 403
        async with client.websocket_connect("/ws", headers={"origin": "https://ok.example"}) as ws:
            await ws.send_text("hi")
            assert await ws.receive_text() == "hi"

    records = [r for r in caplog.records if r.name == "gobstopper.access"]
    assert [r.event for r in records] == ["reject", "connect", "close"]  # type: ignore[attr-defined]
    reject, connect, close = records
    assert connect.client.startswith("10.0.0.1:")  # type: ignore[attr-defined]
    assert (reject.status, reject.reason, reject.path) == (403, "origin", "/ws")  # type: ignore[attr-defined]
    assert reject.client.startswith("10.0.0.1:")  # type: ignore[attr-defined]
    assert (close.code, close.closed_by) == (1000, "client")  # type: ignore[attr-defined]
    assert all(r.exc_info is None for r in caplog.records)
    assert app.metrics.rejected["origin"] == 1 and app.metrics.accepted == 1
    assert app.metrics.open_connections == 0 and app.metrics.closes[1000] == 1
    assert app.metrics.messages_in == 1 and app.metrics.messages_out == 1
