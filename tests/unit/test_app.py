"""The app's dispatch, driven in-process through its ASGI entry point (no sockets)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from gobstopper import Gobstopper, HTTPError, Request, Response, WebSocket


async def call_http(app: Gobstopper, method: str, path: str, body: bytes = b"") -> dict[str, Any]:
    scope = {"type": "http", "method": method, "path": path, "query_string": b"", "headers": []}
    inbox = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return inbox.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start, body_msg = sent
    return {
        "status": start["status"],
        "headers": dict(start["headers"]),
        "raw_headers": start["headers"],
        "body": body_msg["body"],
    }


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

    ok = await call_http(app, "POST", "/json", b'{"a": 1}')
    assert ok["status"] == 200 and json.loads(ok["body"]) == {"got": {"a": 1}}
    bad = await call_http(app, "POST", "/json", b"{nope")
    assert (bad["status"], bad["body"]) == (400, b"request body is not valid JSON")
    gone = await call_http(app, "GET", "/missing-room")
    assert (gone["status"], gone["body"]) == (404, b"no such room")
    empty_resp = await call_http(app, "GET", "/empty")
    assert empty_resp["status"] == 204 and b"content-type" not in empty_resp["headers"]
    csv_resp = await call_http(app, "GET", "/csv")
    content_types = [v for k, v in csv_resp["raw_headers"] if k == b"content-type"]
    assert content_types == [b"text/csv"]
    tea = await call_http(app, "GET", "/teapot")
    assert tea["status"] == 418 and tea["headers"][b"content-type"] == b"text/plain; charset=utf-8"


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


async def call_ws(
    app: Gobstopper, path: str, headers: list[tuple[bytes, bytes]], messages: list[str]
) -> list[dict[str, Any]]:
    """One WebSocket session through the ASGI entry point: connect, the ``messages``,
    then the client's close."""
    scope = {
        "type": "websocket",
        "path": path,
        "query_string": b"",
        "headers": headers,
        "client": ("10.0.0.1", 5000),
    }
    inbox: list[dict[str, Any]] = [{"type": "websocket.connect"}]
    inbox += [{"type": "websocket.receive", "text": m} for m in messages]
    inbox.append({"type": "websocket.disconnect", "code": 1000})
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return inbox.pop(0) if inbox else await asyncio.Event().wait()  # type: ignore[func-returns-value]

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await asyncio.wait_for(app(scope, receive, send), 5)
    return sent


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
    refused = await call_ws(app, "/ws", [(b"origin", b"https://evil.example")], [])
    assert refused[0]["type"] == "websocket.close"  # 403 before accept
    served = await call_ws(app, "/ws", [(b"origin", b"https://ok.example")], ["hi"])
    assert {"type": "websocket.send", "text": "hi"} in served

    records = [r for r in caplog.records if r.name == "gobstopper.access"]
    assert [r.event for r in records] == ["reject", "connect", "close"]  # type: ignore[attr-defined]
    reject, connect, close = records
    assert connect.client == "10.0.0.1:5000"  # type: ignore[attr-defined]
    assert (reject.status, reject.reason, reject.path) == (403, "origin", "/ws")  # type: ignore[attr-defined]
    assert reject.client == "10.0.0.1:5000"  # type: ignore[attr-defined]
    assert (close.code, close.closed_by) == (1000, "client")  # type: ignore[attr-defined]
    assert all(r.exc_info is None for r in caplog.records)
    assert app.metrics.rejected["origin"] == 1 and app.metrics.accepted == 1
    assert app.metrics.open_connections == 0 and app.metrics.closes[1000] == 1
    assert app.metrics.messages_in == 1 and app.metrics.messages_out == 1
