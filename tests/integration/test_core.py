"""The core app under real granian servers (RSGI and ASGI), with the `websockets` client."""

from __future__ import annotations

import asyncio
import json
import sys
import time

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from .helpers import http_request, wait_until
from .servers import Server, start

MiB = 1024 * 1024


async def test_text_bytes_and_json_echo(core_server: Server) -> None:
    async with connect(f"{core_server.ws}/ws/echo") as ws:
        await ws.send("héllo")
        assert await ws.recv() == "héllo"
        await ws.send(b"\x00\x01\xff")
        assert await ws.recv() == b"\x00\x01\xff"
    async with connect(f"{core_server.ws}/ws/json") as ws:
        await ws.send(json.dumps({"a": [1, 2]}))
        assert json.loads(await ws.recv()) == {"got": {"a": [1, 2]}}
        await ws.send("{not json")
        assert json.loads(await ws.recv()) == {"error": "not json"}
        await ws.send(b'{"binary": true}')
        assert json.loads(await ws.recv()) == {"got": {"binary": True}}


async def test_many_messages_arrive_in_order(core_server: Server) -> None:
    async with connect(f"{core_server.ws}/ws/echo") as ws:
        for i in range(200):
            await ws.send(str(i))
        got = [await ws.recv() for _ in range(200)]
    assert got == [str(i) for i in range(200)]


async def test_path_query_headers_cookies(core_server: Server) -> None:
    url = f"{core_server.ws}/ws/info/lobby/42/a/b/c?tag=x&tag=y"
    headers = {"X-Test": "yes", "Cookie": "session=abc; theme=dark"}
    async with connect(url, additional_headers=headers) as ws:
        data = json.loads(await ws.recv())
    assert data == {
        "room": "lobby",
        "number": 42,
        "number_is_int": True,
        "rest": "a/b/c",
        "path": "/ws/info/lobby/42/a/b/c",
        "query": ["x", "y"],
        "header": "yes",
        "cookies": {"session": "abc", "theme": "dark"},
        "client_host": "127.0.0.1",
        "interface": core_server.interface,
        "scheme": "ws",
        "state": "connected",
    }


async def test_converter_mismatch_is_404(core_server: Server) -> None:
    with pytest.raises(InvalidStatus) as info:
        async with connect(f"{core_server.ws}/ws/info/lobby/notanint/x"):
            pass
    assert info.value.response.status_code == 404


async def test_unknown_websocket_path_is_refused_with_404(core_server: Server) -> None:
    with pytest.raises(InvalidStatus) as info:
        async with connect(f"{core_server.ws}/ws/nowhere"):
            pass
    assert info.value.response.status_code == 404


@pytest.mark.parametrize("status", [401, 403, 429, 503])
async def test_rejection_before_accept_gives_http_status(core_server: Server, status: int) -> None:
    with pytest.raises(InvalidStatus) as info:
        async with connect(f"{core_server.ws}/ws/reject/{status}"):
            pass
    assert info.value.response.status_code == status


async def test_handler_error_before_accept_is_500(core_server: Server) -> None:
    with pytest.raises(InvalidStatus) as info:
        async with connect(f"{core_server.ws}/ws/crash-before-accept"):
            pass
    assert info.value.response.status_code == 500
    assert core_server.log().count("RuntimeError: boom before accept") == 1
    await _server_still_serves(core_server)


async def test_handler_error_after_accept_closes_1011(core_server: Server) -> None:
    async with connect(f"{core_server.ws}/ws/crash-after-accept") as ws:
        await ws.send("trigger")
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
    expected = 1011 if core_server.interface == "asgi" else 1005
    assert info.value.rcvd is not None and info.value.rcvd.code == expected
    await _wait_for_log(core_server, "RuntimeError: boom after accept")
    assert core_server.log().count("RuntimeError: boom after accept") == 1
    await _server_still_serves(core_server)


async def test_900_kib_text_arrives_whole_both_ways(core_server: Server) -> None:
    async with connect(f"{core_server.ws}/ws/size", max_size=None) as ws:
        await ws.send("y" * (900 * 1024))
        assert await ws.recv() == f"received {900 * 1024}"
        await ws.send(f"send {900 * 1024}")
        reply = await ws.recv()
        assert isinstance(reply, str) and reply == "x" * (900 * 1024)


async def test_inbound_over_limit_closes_1009_and_others_unaffected(core_server: Server) -> None:
    key = f"toobig-{core_server.interface}"
    async with connect(f"{core_server.ws}/ws/echo") as bystander:
        async with connect(f"{core_server.ws}/ws/watch/{key}") as watcher:
            async with connect(f"{core_server.ws}/ws/closed-code?key={key}", max_size=None) as ws:
                await ws.send("z" * (MiB + 1))
                with pytest.raises(ConnectionClosed) as info:
                    await ws.recv()
            # The handler saw ConnectionClosed with 1009 under both interfaces.
            assert float(await asyncio.wait_for(watcher.recv(), 10)) == 1009
        expected = 1009 if core_server.interface == "asgi" else 1005
        assert info.value.rcvd is not None and info.value.rcvd.code == expected
        await bystander.send("still here")
        assert await bystander.recv() == "still here"


async def test_message_at_exactly_the_limit_is_accepted(core_server: Server) -> None:
    async with connect(f"{core_server.ws}/ws/size", max_size=None) as ws:
        await ws.send(b"\x01" * MiB)
        assert await ws.recv() == f"received {MiB}"
        # Multi-byte characters count as bytes, not characters.
        await ws.send("é" * (MiB // 2))
        assert await ws.recv() == f"received {MiB // 2}"


async def test_outbound_over_limit_raises_and_connection_stays_usable(core_server: Server) -> None:
    async with connect(f"{core_server.ws}/ws/size", max_size=None) as ws:
        await ws.send(f"send {MiB + 10}")
        assert await ws.recv() == f"too big: {MiB + 10} > {MiB}"
        await ws.send("ping")
        assert await ws.recv() == "received 4"


@pytest.mark.parametrize("kind", ["bytes", "iter", "agen"])
async def test_send_stream_1_mib_arrives_as_16_chunks_in_order(
    core_server: Server, kind: str
) -> None:
    expected = bytes(i % 251 for i in range(MiB))
    async with connect(f"{core_server.ws}/ws/stream", max_size=None) as ws:
        await ws.send(kind)
        chunks: list[bytes] = []
        while True:
            msg = await asyncio.wait_for(ws.recv(), 10)
            if isinstance(msg, str):
                break
            chunks.append(msg)
        await ws.send("bye")
    assert b"".join(chunks) == expected
    assert all(len(c) <= 64 * 1024 for c in chunks)
    if kind == "bytes":
        assert len(chunks) == 16 and msg == "done 16"
    else:
        assert msg == f"done {len(chunks)}"


async def test_send_only_handler_notices_departure_within_a_second(core_server: Server) -> None:
    key = f"ticker-{core_server.interface}-{time.monotonic_ns()}"
    async with connect(f"{core_server.ws}/ws/watch/{key}") as watcher:
        async with connect(f"{core_server.ws}/ws/ticker?key={key}") as ws:
            assert await ws.recv() == "tick"
            left_at = time.monotonic()
        noticed = float(await asyncio.wait_for(watcher.recv(), 5))
    # Both processes read the same monotonic clock.
    assert noticed - left_at < 1.0


async def test_send_only_handler_notices_dropped_tcp(core_server: Server) -> None:
    key = f"drop-{core_server.interface}-{time.monotonic_ns()}"
    async with connect(f"{core_server.ws}/ws/watch/{key}") as watcher:
        ws = await connect(f"{core_server.ws}/ws/ticker?key={key}")
        assert await ws.recv() == "tick"
        left_at = time.monotonic()
        ws.transport.abort()  # no close frame: the TCP connection just goes
        noticed = float(await asyncio.wait_for(watcher.recv(), 5))
    assert noticed - left_at < 1.0


async def test_subprotocol_under_asgi_and_clear_refusal_under_rsgi(core_server: Server) -> None:
    if core_server.interface == "asgi":
        async with connect(f"{core_server.ws}/ws/subprotocol", subprotocols=["chat.v1"]) as ws:
            assert ws.subprotocol == "chat.v1"
            assert await ws.recv() == "chose chat.v1"
    else:
        # RSGI cannot echo a subprotocol: the handler gets UnsupportedByServer and
        # accepts without one, which a client that insists on one refuses.
        async with connect(f"{core_server.ws}/ws/subprotocol") as ws:
            assert await ws.recv() == "unsupported"


async def test_close_code_and_reason(core_server: Server) -> None:
    async with connect(f"{core_server.ws}/ws/close-with-reason") as ws:
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
    rcvd = info.value.rcvd
    assert rcvd is not None
    if core_server.interface == "asgi":
        assert (rcvd.code, rcvd.reason) == (4001, "bye now")
    else:
        assert (rcvd.code, rcvd.reason) == (1005, "")


async def test_http_routes(core_server: Server) -> None:
    port = core_server.port
    health = await http_request(port, "GET", "/health")
    assert health.status == 200 and health.headers["content-type"] == "application/json"
    assert health.json() == {"status": "ok", "started": ["startup"]}
    page = await http_request(port, "GET", "/page")
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.body == b"<h1>hello</h1>"
    text = await http_request(port, "GET", "/text")
    assert (text.status, text.body) == (200, b"plain")
    head = await http_request(port, "HEAD", "/text")
    assert (head.status, head.body) == (200, b"")
    created = await http_request(port, "PUT", "/items/7?q=find", body=b'{"x": 1}')
    assert created.status == 201
    assert created.json() == {"id": 7, "method": "PUT", "body": {"x": 1}, "q": "find"}
    missing = await http_request(port, "GET", "/missing")
    assert missing.status == 404
    wrong_method = await http_request(port, "DELETE", "/items/7")
    assert wrong_method.status == 405 and wrong_method.headers["allow"] == "POST, PUT"


async def test_http_handler_error_is_500_logged_once(core_server: Server) -> None:
    before = core_server.log().count("RuntimeError: boom in HTTP handler")
    result = await http_request(core_server.port, "GET", "/crash")
    assert result.status == 500
    await _wait_for_log(core_server, "RuntimeError: boom in HTTP handler", before + 1)
    # Logged with its traceback: the failing source line is part of the log entry.
    assert core_server.log().count('raise RuntimeError("boom in HTTP handler")') == before + 1
    await _server_still_serves(core_server)
    assert core_server.log().count("RuntimeError: boom in HTTP handler") == before + 1


async def _server_still_serves(server: Server) -> None:
    async with connect(f"{server.ws}/ws/echo") as ws:
        await ws.send("alive?")
        assert await ws.recv() == "alive?"
    assert (await http_request(server.port, "GET", "/health")).status == 200


async def _wait_for_log(server: Server, needle: str, count: int = 1, timeout: float = 5.0) -> None:
    """Wait until the server's log (written by another process) holds ``needle`` ``count``
    times."""
    await wait_until(
        lambda: server.log().count(needle) >= count,
        timeout,
        lambda: f"{needle!r} not logged {count} time(s):\n{server.log()}",
    )


async def test_uvicorn_delivers_accept_headers_and_subprotocol() -> None:
    """granian's ASGI side drops extra accept headers; uvicorn delivers them."""
    server = start(
        "",
        "uvicorn",
        command=[
            sys.executable,
            "-m",
            "uvicorn",
            "--host",
            "127.0.0.1",
            "--port",
            "{port}",
            "tests.apps.core:app",
        ],
    )
    try:
        async with connect(f"{server.ws}/ws/subprotocol", subprotocols=["chat.v1"]) as ws:
            assert ws.subprotocol == "chat.v1"
            assert ws.response is not None and ws.response.headers["x-extra"] == "1"
            assert await ws.recv() == "chose chat.v1"
        async with connect(f"{server.ws}/ws/close-with-reason") as ws:
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
        assert info.value.rcvd is not None
        assert (info.value.rcvd.code, info.value.rcvd.reason) == (4001, "bye now")
    finally:
        server.stop()


async def test_close_handshake_completes_when_the_app_keeps_the_websocket(
    core_server: Server,
) -> None:
    """A lingering reference to a finished WebSocket must not hold the server's
    connection open: the client's close gets its answer at once."""
    ws = await connect(f"{core_server.ws}/ws/kept", close_timeout=5)
    assert await ws.recv() == "hello"
    started = time.monotonic()
    await ws.close()
    assert time.monotonic() - started < 2
    assert ws.close_code in (1000, 1005)  # the server answered with a close frame
