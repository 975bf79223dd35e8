"""The test kit (gobstopper.testing): the in-process clients, async and sync, against an
app of this module, through its real ASGI entry point (no sockets)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from gobstopper import CloseCode, Gobstopper, HTTPError, MessageType, Request, WebSocket
from gobstopper.testing import (
    AsyncTestClient,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    ReceiveTimeout,
    TestClient,
    WebSocketDenied,
)

app = Gobstopper(environ={}, allowed_origins=["https://good.example"])
events: list[str] = []


@app.on_startup
async def started() -> None:
    events.append("startup")


@app.on_shutdown
def stopped() -> None:
    events.append("shutdown")


@app.websocket("/ws/echo")
async def echo(ws: WebSocket) -> None:
    await ws.accept()
    async for message in ws:
        if message.type is MessageType.BYTES:
            await ws.send_bytes(message.bytes[::-1])
        elif message.text.startswith("close "):
            _, code, reason = message.text.split(" ", 2)
            await ws.close(int(code), reason)
            return
        elif message.text == "crash":
            raise RuntimeError("the handler failed")
        else:
            await ws.send_text(message.text)


@app.websocket("/ws/whoami/<name>")
async def whoami(ws: WebSocket, name: str) -> None:
    offered = ws.requested_subprotocols
    await ws.accept(subprotocol=offered[0] if offered else None)
    await ws.send_json(
        {
            "name": name,
            "query": dict(ws.query_params),
            "agent": ws.headers.get("x-agent"),
            "cookies": ws.cookies,
            "offered": offered,
            "client": ws.client_address,
        }
    )
    await ws.wait_closed()


@app.websocket("/ws/room/<room>")
async def room(ws: WebSocket, room: str) -> None:
    await ws.accept()
    async with app.manager.connect(ws) as conn:
        await conn.join(room)
        await conn.send({"joined": room})
        async for message in ws:
            await app.manager.broadcast({"said": message.text}, room=room)


def token_hook(ws: WebSocket) -> None:
    if ws.query_params.get("token") != "open-sesame":
        raise HTTPError(401, "token please")


@app.websocket("/ws/private", auth=token_hook)
async def private(ws: WebSocket) -> None:
    await ws.accept()
    await ws.send_text("welcome")
    await ws.wait_closed()


@app.get("/hello/<name>")
async def hello(request: Request, name: str) -> dict[str, Any]:
    return {"hello": name, "q": request.query_params.get("q")}


@app.post("/double")
async def double(request: Request) -> dict[str, Any]:
    return {"twice": 2 * (await request.json())["n"]}


# -- the async client ------------------------------------------------------------------


async def test_lifespan_runs_the_startup_and_shutdown_hooks() -> None:
    events.clear()
    async with AsyncTestClient(app):
        assert events == ["startup"]
    assert events == ["startup", "shutdown"]


async def test_text_bytes_and_json_go_both_ways() -> None:
    async with AsyncTestClient(app) as client, client.websocket_connect("/ws/echo") as ws:
        await ws.send_text("hi")
        assert await ws.receive_text() == "hi"
        await ws.send_bytes(b"abc")
        assert await ws.receive_bytes() == b"cba"
        await ws.send_json({"n": [1, 2]})
        assert await ws.receive_json() == {"n": [1, 2]}


async def test_path_query_headers_cookies_and_subprotocols_reach_the_app() -> None:
    async with AsyncTestClient(app, headers={"x-agent": "kit"}) as client:
        session = client.websocket_connect(
            "/ws/whoami/ann?a=1",
            params={"b": "2"},
            cookies={"sid": "xyz", "theme": "dark"},
            subprotocols=["chat.v2", "chat.v1"],
        )
        async with session as ws:
            seen = await ws.receive_json()
            assert ws.subprotocol == "chat.v2"
    assert seen["name"] == "ann"
    assert seen["query"] == {"a": "1", "b": "2"}
    assert seen["agent"] == "kit"
    assert seen["cookies"] == {"sid": "xyz", "theme": "dark"}
    assert seen["offered"] == ["chat.v2", "chat.v1"]
    assert seen["client"].startswith("127.0.0.1:")


async def test_a_refused_handshake_raises_with_its_status() -> None:
    async with AsyncTestClient(app) as client:
        with pytest.raises(WebSocketDenied) as refused:
            async with client.websocket_connect("/ws/private"):
                pass
        assert refused.value.status == 401
        with pytest.raises(WebSocketDenied) as unknown:
            await client.websocket_connect("/ws/nowhere").connect()
        assert unknown.value.status == 404
        origin = {"origin": "https://evil.example"}
        with pytest.raises(WebSocketDenied) as foreign:
            await client.websocket_connect("/ws/echo", headers=origin).connect()
        assert foreign.value.status == 403
        async with client.websocket_connect("/ws/private?token=open-sesame") as ws:
            assert await ws.receive_text() == "welcome"


async def test_a_close_by_the_app_carries_its_code_and_reason_every_time() -> None:
    async with AsyncTestClient(app) as client, client.websocket_connect("/ws/echo") as ws:
        await ws.send_text("close 4321 enough")
        with pytest.raises(ConnectionClosedError) as closed:
            await ws.receive()
        assert (closed.value.code, closed.value.reason) == (4321, "enough")
        assert (ws.close_code, ws.close_reason) == (4321, "enough")
        with pytest.raises(ConnectionClosed):
            await ws.receive()  # again, at once
        with pytest.raises(ConnectionClosed):
            await ws.send_text("anyone?")


async def test_a_crashing_handler_closes_with_1011() -> None:
    async with AsyncTestClient(app) as client, client.websocket_connect("/ws/echo") as ws:
        await ws.send_text("crash")
        with pytest.raises(ConnectionClosedError) as closed:
            await ws.receive()
        assert closed.value.code == CloseCode.INTERNAL_ERROR


async def test_a_receive_gives_up_after_its_timeout() -> None:
    async with AsyncTestClient(app) as client, client.websocket_connect("/ws/echo") as ws:
        started = time.monotonic()
        with pytest.raises(ReceiveTimeout, match=r"no message within 0\.1s"):
            await ws.receive(timeout=0.1)
        assert time.monotonic() - started < 2
        await ws.send_text("still here")  # the connection is as it was
        assert await ws.receive_text() == "still here"


async def test_two_members_of_a_room_see_each_others_broadcasts() -> None:
    async with (
        AsyncTestClient(app) as client,
        client.websocket_connect("/ws/room/lobby") as ann,
        client.websocket_connect("/ws/room/lobby") as ben,
        client.websocket_connect("/ws/room/attic") as cat,
    ):
        for ws in (ann, ben, cat):
            assert "joined" in await ws.receive_json()
        await ann.send_text("hello")
        assert await ann.receive_json() == {"said": "hello"}
        assert await ben.receive_json() == {"said": "hello"}
        await cat.send_text("up here")
        assert await cat.receive_json() == {"said": "up here"}  # and nothing before it


async def test_closing_from_the_client_ends_the_handler() -> None:
    async with AsyncTestClient(app) as client:
        ws = client.websocket_connect("/ws/room/lobby")
        async with ws:
            await ws.receive_json()
            assert len(app.manager) == 1
        assert ws.close_code == CloseCode.NORMAL_CLOSURE
        assert len(app.manager) == 0 and not app.connections


async def test_http_routes_answer() -> None:
    async with AsyncTestClient(app) as client:
        got = await client.get("/hello/ann", params={"q": "x"})
        assert (got.status, got.json()) == (200, {"hello": "ann", "q": "x"})
        assert got.headers["content-type"] == "application/json"
        posted = await client.post("/double", json={"n": 21})
        assert posted.json() == {"twice": 42}
        missing = await client.get("/nowhere")
        assert (missing.status, missing.text) == (404, "Not Found")


async def test_a_failing_startup_raises_with_its_message() -> None:
    broken = Gobstopper(environ={})

    @broken.on_startup
    def fail() -> None:
        raise ValueError("no database")

    with pytest.raises(RuntimeError, match="no database"):
        async with AsyncTestClient(broken):
            pass


def test_paths_are_checked() -> None:
    client = AsyncTestClient(app)
    with pytest.raises(ValueError, match="not a URL"):
        client.websocket_connect("ws://elsewhere/ws/echo")
    with pytest.raises(ValueError, match="starts with '/'"):
        client.websocket_connect("ws/echo")


# -- the sync client -------------------------------------------------------------------


def test_the_sync_client_runs_the_app_in_a_thread_and_stops_it() -> None:
    events.clear()
    before = threading.active_count()
    with TestClient(app) as client:
        assert events == ["startup"]
        with client.websocket_connect("/ws/echo") as ws:
            ws.send_json({"n": 1})
            assert ws.receive_json() == {"n": 1}
            ws.send_bytes(b"ab")
            assert ws.receive_bytes() == b"ba"
            with pytest.raises(ReceiveTimeout):
                ws.receive_text(timeout=0.1)
            ws.send_text("close 1000 done")
            with pytest.raises(ConnectionClosedOK):
                ws.receive()
            assert ws.close_code == 1000
        with pytest.raises(WebSocketDenied) as refused, client.websocket_connect("/ws/private"):
            pass
        assert refused.value.status == 401
        assert client.get("/hello/ben").json()["hello"] == "ben"
    assert events == ["startup", "shutdown"]
    assert threading.active_count() == before


def test_the_sync_client_shows_the_handshake_and_a_failed_startup() -> None:
    with TestClient(app) as client:
        with client.websocket_connect("/ws/whoami/x", subprotocols=["v9"]) as ws:
            assert (ws.path, ws.subprotocol, ws.close_code) == ("/ws/whoami/x", "v9", None)
            assert ws.receive_json()["offered"] == ["v9"]
        assert (ws.close_code, ws.close_reason) == (1000, "")
    broken = Gobstopper(environ={})

    @broken.on_startup
    def fail() -> None:
        raise ValueError("no database")

    before = threading.active_count()
    with pytest.raises(RuntimeError, match="no database"), TestClient(broken):
        pass
    assert threading.active_count() == before  # its loop's thread is gone too


def test_the_sync_client_serves_async_tests_too() -> None:
    async def inside_a_loop() -> str:
        # A sync client in a coroutine: the app's loop is the client's own, not this one.
        with TestClient(app) as client, client.websocket_connect("/ws/echo") as ws:
            ws.send_text("x")
            return ws.receive_text()

    assert asyncio.run(inside_a_loop()) == "x"


def test_the_sync_client_outside_a_with_block_says_so() -> None:
    with pytest.raises(RuntimeError, match="with TestClient"):
        TestClient(app).get("/hello/x")


# -- the pytest plugin's in-process fixtures -------------------------------------------


@pytest.fixture
def gobstopper_app() -> Gobstopper:
    return app


def test_the_client_fixture(gobstopper_client: TestClient) -> None:
    with gobstopper_client.websocket_connect("/ws/echo") as ws:
        ws.send_text("fixture")
        assert ws.receive_text() == "fixture"


async def test_the_async_client_fixture(gobstopper_async_client: AsyncTestClient) -> None:
    async with gobstopper_async_client.websocket_connect("/ws/echo") as ws:
        await ws.send_text("fixture")
        assert await ws.receive_text() == "fixture"
