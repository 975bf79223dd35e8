"""The test kit when the app misbehaves: a handler that ignores its cancellation, a
refusal sent in parts, a crash after a close, an unexpected first message; and what it
hands the app (paths, headers). Small raw ASGI apps, so each misbehaviour is exact."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import pytest

from gobstopper import Gobstopper, Request, WebSocket
from gobstopper.testing import (
    AsyncTestClient,
    ConnectionClosed,
    ReceiveTimeout,
    TestClient,
    WebSocketDenied,
)

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


async def ignore_cancellation(release: asyncio.Event | None = None) -> None:
    """Wait forever (or until ``release``), swallowing every cancellation, as a retry
    loop with a bare ``except`` does."""
    while release is None or not release.is_set():
        try:
            if release is None:
                await asyncio.get_running_loop().create_future()
            else:
                await release.wait()
        except asyncio.CancelledError:
            pass


def stubborn_app(release: asyncio.Event | None = None) -> Any:
    async def app(scope: Message, receive: Receive, send: Send) -> None:
        assert scope["type"] == "websocket"
        await receive()
        await send({"type": "websocket.accept"})
        await ignore_cancellation(release)

    return app


# -- 1: a handler that ignores its cancellation ------------------------------------------


async def test_closing_a_handler_that_ignores_cancellation_fails_in_bounded_time() -> None:
    release = asyncio.Event()
    async with AsyncTestClient(stubborn_app(release), timeout=0.2, lifespan=False) as client:
        ws = client.websocket_connect("/stubborn")
        await ws.connect()
        try:
            with pytest.raises(ReceiveTimeout, match=r"/stubborn.*ignored its cancellation"):
                await asyncio.wait_for(ws.close(), 5)
        finally:
            release.set()  # let the handler end, for this test's loop to close


def test_the_sync_client_stops_its_thread_despite_a_stuck_handler() -> None:
    before = set(threading.enumerate())
    stuck = pytest.raises(ReceiveTimeout, match=r"/stubborn.*ignored its cancellation")
    with stuck, TestClient(stubborn_app(), timeout=0.2, lifespan=False) as client:
        ws = client.websocket_connect("/stubborn")
        ws.__enter__()  # then leave it, as a with block does
        ws.__exit__(None, None, None)
    assert [t for t in threading.enumerate() if t not in before] == []


def test_the_sync_client_says_when_a_task_ignores_cancellation_at_exit() -> None:
    background: list[asyncio.Future[None]] = []

    async def app(scope: Message, receive: Receive, send: Send) -> None:
        # A background task of the app's startup that swallows its cancellation.
        assert scope["type"] == "lifespan"
        await receive()
        background.append(asyncio.ensure_future(ignore_cancellation()))
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.complete"})

    before = set(threading.enumerate())
    with pytest.raises(ReceiveTimeout, match="CancelledError"), TestClient(app, timeout=0.2):
        pass
    assert [t for t in threading.enumerate() if t not in before] == []


# -- 2: refusals and other first answers --------------------------------------------------


async def test_a_refusal_sent_in_parts_is_read_whole_and_the_app_sees_the_disconnect() -> None:
    after_refusal: list[Message] = []

    async def app(scope: Message, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.http.response.start", "status": 418, "headers": []})
        await asyncio.sleep(0)  # a suspension between the parts: a middleware, a stream
        await send({"type": "websocket.http.response.body", "body": b"tea", "more_body": True})
        await asyncio.sleep(0)
        await send({"type": "websocket.http.response.body", "body": b"pot"})
        after_refusal.append(await receive())

    async with AsyncTestClient(app, timeout=1, lifespan=False) as client:
        with pytest.raises(WebSocketDenied) as denied:
            await client.websocket_connect("/ws").connect()
    assert (denied.value.status, denied.value.body) == (418, b"teapot")
    assert [m["type"] for m in after_refusal] == ["websocket.disconnect"]


async def test_a_send_before_accept_is_an_error_and_disconnects_the_app() -> None:
    after: list[Message] = []

    async def app(scope: Message, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.send", "text": "too early"})
        after.append(await receive())

    async with AsyncTestClient(app, timeout=1, lifespan=False) as client:
        with pytest.raises(RuntimeError, match=r"/ws: the app sent 'websocket\.send' before"):
            await client.websocket_connect("/ws").connect()
    assert [m["type"] for m in after] == ["websocket.disconnect"]


# -- 3: the app's exception, exactly once ------------------------------------------------


async def test_an_exception_during_the_handshake_is_raised_once() -> None:
    async def app(scope: Message, receive: Receive, send: Send) -> None:
        await receive()
        raise ValueError("bad handshake code")

    async with AsyncTestClient(app, timeout=1, lifespan=False) as client:
        with pytest.raises(ValueError, match="bad handshake code"):
            await client.websocket_connect("/ws").connect()
    # Leaving the client raised nothing more: the test saw it already.


async def close_then_raise(scope: Message, receive: Receive, send: Send) -> None:
    await receive()
    await send({"type": "websocket.accept"})
    await receive()
    await send({"type": "websocket.close", "code": 1000})
    raise ValueError("boom after the close")


async def test_an_exception_after_the_apps_close_surfaces_at_exit() -> None:
    with pytest.raises(ValueError, match="boom after the close"):
        async with AsyncTestClient(close_then_raise, timeout=1, lifespan=False) as client:
            ws = client.websocket_connect("/ws")
            await ws.connect()
            await ws.send_text("x")
            with pytest.raises(ConnectionClosed):
                await ws.receive()


async def test_the_tests_own_error_comes_first_and_the_apps_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with pytest.raises(AssertionError, match="the test's own"):
        async with AsyncTestClient(close_then_raise, timeout=1, lifespan=False) as client:
            ws = client.websocket_connect("/ws")
            await ws.connect()
            await ws.send_text("x")
            with pytest.raises(ConnectionClosed):
                await ws.receive()
            raise AssertionError("the test's own")
    assert "/ws: the app failed too" in caplog.text
    assert "boom after the close" in caplog.text


def test_in_a_sync_test_too_its_own_error_comes_first(caplog: pytest.LogCaptureFixture) -> None:
    def fail_in_a_connection(client: TestClient) -> None:
        with client.websocket_connect("/ws") as ws:
            ws.send_text("x")
            with pytest.raises(ConnectionClosed):
                ws.receive()
            raise AssertionError("the test's own")

    with (
        pytest.raises(AssertionError, match="the test's own"),
        TestClient(close_then_raise, timeout=1, lifespan=False) as client,
    ):
        fail_in_a_connection(client)
    assert "/ws: the app failed too" in caplog.text
    assert "boom after the close" in caplog.text


# -- 4, 5: paths and headers as a server hands them over -----------------------------------


def recording_app(scopes: list[Message]) -> Any:
    async def app(scope: Message, receive: Receive, send: Send) -> None:
        scopes.append(scope)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    return app


async def test_the_path_is_percent_decoded_and_raw_path_kept() -> None:
    scopes: list[Message] = []
    async with AsyncTestClient(recording_app(scopes), lifespan=False) as client:
        await client.get("/hello/a%20b")
        await client.get("/caf%C3%A9/café")
    assert [(s["path"], s["raw_path"]) for s in scopes] == [
        ("/hello/a b", b"/hello/a%20b"),
        ("/café/café", b"/caf%C3%A9/caf%C3%A9"),
    ]


hello = Gobstopper(environ={})


@hello.get("/hello/<name>")
async def greet(request: Request, name: str) -> dict[str, str]:
    return {"name": name}


@hello.websocket("/ws")
async def accept(ws: WebSocket) -> None:
    await ws.accept()
    await ws.send_text("ok")
    await ws.wait_closed()


async def test_a_route_gets_the_decoded_path_parameter() -> None:
    async with AsyncTestClient(hello) as client:
        assert (await client.get("/hello/a%20b")).json() == {"name": "a b"}


async def test_header_names_merge_whatever_their_case() -> None:
    scopes: list[Message] = []
    app = recording_app(scopes)
    async with AsyncTestClient(app, headers={"X-Team": "a"}, lifespan=False) as client:
        await client.post(
            "/",
            headers={"Host": "example.org", "x-team": "b", "Content-Type": "text/plain"},
            json={"n": 1},
        )
    names = [name for name, _ in scopes[0]["headers"]]
    assert sorted(names) == sorted(set(names)), names  # each name once
    headers = dict(scopes[0]["headers"])
    assert headers[b"host"] == b"example.org"
    assert headers[b"x-team"] == b"b"
    assert headers[b"content-type"] == b"text/plain"


async def test_a_per_call_origin_overrides_the_default_one() -> None:
    async with AsyncTestClient(hello, headers={"origin": "http://testserver"}) as client:
        with pytest.raises(WebSocketDenied) as denied:
            async with client.websocket_connect("/ws", headers={"Origin": "https://evil.test"}):
                pass
        assert denied.value.status == 403
        same_host = {"Host": "chat.example", "Origin": "http://chat.example"}  # ws: an http page
        async with client.websocket_connect("/ws", headers=same_host) as ws:
            assert await ws.receive_text() == "ok"


async def test_every_set_cookie_header_is_kept() -> None:
    async def app(scope: Message, receive: Receive, send: Send) -> None:
        cookies = [
            (b"set-cookie", b"a=1; Expires=Wed, 21 Oct 2026 07:28:00 GMT"),
            (b"Set-Cookie", b"b=2"),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": cookies})
        await send({"type": "http.response.body", "body": b""})

    async with AsyncTestClient(app, lifespan=False) as client:
        response = await client.get("/")
    assert response.headers.get_all("set-cookie") == [
        "a=1; Expires=Wed, 21 Oct 2026 07:28:00 GMT",
        "b=2",
    ]
    assert response.headers["set-cookie"].endswith(", b=2")


# -- 7: the public iterator is bounded -----------------------------------------------------


async def test_iterating_a_silent_session_gives_up_after_its_timeout() -> None:
    release = asyncio.Event()
    async with AsyncTestClient(stubborn_app(release), timeout=0.2, lifespan=False) as client:
        try:
            async with client.websocket_connect("/quiet") as ws:
                with pytest.raises(ReceiveTimeout, match="/quiet"):
                    await asyncio.wait_for(anext(aiter(ws)), 5)
                release.set()
        finally:
            release.set()
