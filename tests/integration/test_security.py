"""Who may connect and how much they may send, against real granian servers (RSGI and
ASGI) with real clients: origins, auth hooks, connection limits, rate limits, idle
timeouts, heartbeats, half-open clients and the counters."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Origin

from .helpers import http_request, stats, wait_stats
from .servers import Server, start

APP = "tests.apps.guarded:app"
WAIT = 5.0


def guarded(env: dict[str, str]) -> Any:
    """A module fixture: the guarded app under both interfaces, with ``env``."""

    @pytest.fixture(scope="module", params=["rsgi", "asgi"])
    def fixture(request: pytest.FixtureRequest) -> Iterator[Server]:
        server = start(APP, request.param, env)
        yield server
        server.stop()

    return fixture


default_server = guarded({})
origins_server = guarded({"WS_ALLOWED_ORIGINS": "https://app.example.com, https://*.example.org"})
limited_server = guarded({"WS_MAX_CONNECTIONS": "3"})
per_ip_server = guarded({"WS_MAX_CONNECTIONS_PER_IP": "2"})
# A token every 2 s: the sixth message of a burst is over the limit however slowly the
# machine reads the first five.
rate_server = guarded({"WS_RATE_LIMIT": "0.5", "WS_RATE_LIMIT_BURST": "5"})
drop_server = guarded(
    {"WS_RATE_LIMIT": "5", "WS_RATE_LIMIT_BURST": "5", "WS_RATE_LIMIT_POLICY": "drop"}
)
idle_server = guarded({"WS_IDLE_TIMEOUT": "1", "WS_HEARTBEAT_MESSAGE": "ping"})


async def refused_status(url: str, **kwargs: Any) -> int:
    with pytest.raises(InvalidStatus) as info:
        async with connect(url, **kwargs):
            pass
    return info.value.response.status_code


async def echo_once(ws: ClientConnection, text: str = "hi") -> None:
    await ws.send(text)
    assert await asyncio.wait_for(ws.recv(), WAIT) == text


async def test_other_sites_pages_are_refused_by_default(default_server: Server) -> None:
    url = f"{default_server.ws}/ws/echo"
    same = f"http://127.0.0.1:{default_server.port}"
    async with connect(url, origin=same) as ws:  # type: ignore[arg-type]
        await echo_once(ws)
    async with connect(url) as ws:  # no Origin: not a browser page
        await echo_once(ws)
    assert await refused_status(url, origin="https://evil.example") == 403  # type: ignore[arg-type]
    assert await refused_status(url, origin="null") == 403  # type: ignore[arg-type]
    data = await stats(default_server)
    assert data["rejected"]["origin"] >= 2


async def test_allowed_origins_and_patterns(origins_server: Server) -> None:
    url = f"{origins_server.ws}/ws/echo"
    for origin in (
        "https://app.example.com",
        "https://chat.example.org",
        "https://a.b.example.org",
    ):
        async with connect(url, origin=origin) as ws:  # type: ignore[arg-type]
            await echo_once(ws)
    refused = (
        "https://evil.com",
        "https://example.org",
        "http://app.example.com",  # another scheme
        "http://a.example.org",
        "https://a.example.org:8443",  # another port
        "https://evil.net\\@app.example.com",  # hosts differ between URL parsers
        "https://evil.net@app.example.com",  # userinfo
        "https://app.example.com/",  # a path
        "https://app.example.com:443:443",
    )
    for origin in refused:
        assert await refused_status(url, origin=origin) == 403, origin


async def test_same_host_compares_the_scheme(default_server: Server) -> None:
    url = f"{default_server.ws}/ws/echo"
    port = default_server.port
    for origin in (
        f"https://127.0.0.1:{port}",
        "https://127.0.0.1",
        f"http://user@127.0.0.1:{port}",
    ):
        assert await refused_status(url, origin=origin) == 403, origin
    # Behind a TLS-terminating proxy the page is https though the hop to the app is not.
    behind_tls = {"X-Forwarded-Proto": "https"}
    page = Origin(f"https://127.0.0.1:{port}")
    async with connect(url, origin=page, additional_headers=behind_tls) as ws:
        await echo_once(ws)
    plain = Origin(f"http://127.0.0.1:{port}")
    assert await refused_status(url, origin=plain, additional_headers=behind_tls) == 403


async def test_auth_hooks_refuse_before_accept_and_set_the_user(default_server: Server) -> None:
    base = default_server.ws
    assert await refused_status(f"{base}/ws/private") == 401
    assert await refused_status(f"{base}/ws/private?token=wrong") == 401
    async with connect(f"{base}/ws/private?token=s3cret") as ws:
        assert await asyncio.wait_for(ws.recv(), WAIT) == "hello alice"
        await echo_once(ws)
    assert await refused_status(f"{base}/ws/admin") == 403
    async with connect(f"{base}/ws/admin", additional_headers={"x-role": "admin"}) as ws:
        assert await asyncio.wait_for(ws.recv(), WAIT) == "admin"
    data = await stats(default_server)
    assert data["rejected"]["auth"] >= 3


async def test_connection_limit_refuses_with_503_and_releases(limited_server: Server) -> None:
    url = f"{limited_server.ws}/ws/echo"
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(connect(url)) for _ in range(3)]
        assert await refused_status(url) == 503
        # One leaves with a close frame, one by dropping its TCP connection: both free
        # their place.
        await clients[0].close()
        clients[1].transport.abort()
        await wait_stats(limited_server, lambda d: d["limiter_total"] == 1, WAIT)
        async with connect(url) as again, connect(url) as more:
            await echo_once(again)
            await echo_once(more)
            assert await refused_status(url) == 503
        await echo_once(clients[2])  # the one left is untouched
    data = await wait_stats(limited_server, lambda d: d["limiter_total"] == 0, WAIT)
    assert data["rejected"]["limit"] >= 2


async def test_per_ip_limit_refuses_with_429_and_releases(per_ip_server: Server) -> None:
    url = f"{per_ip_server.ws}/ws/echo"
    async with connect(url) as a, connect(url) as b:
        assert await refused_status(url) == 429
        await echo_once(a)
        b.transport.abort()
        await wait_stats(per_ip_server, lambda d: d["limiter_total"] == 1, WAIT)
        async with connect(url) as c:
            await echo_once(c)


async def test_half_open_clients_hold_no_connection_slot(limited_server: Server) -> None:
    """TCP connections that never ask for an upgrade are not WebSockets: they do not
    count against the limits, and real clients get in."""
    idle_sockets = [
        socket.create_connection(("127.0.0.1", limited_server.port), timeout=WAIT) for _ in range(5)
    ]
    try:
        url = f"{limited_server.ws}/ws/echo"
        async with connect(url) as a, connect(url) as b, connect(url) as c:
            for ws in (a, b, c):
                await echo_once(ws)
        data = await stats(limited_server)
        assert data["open_connections"] <= 3
    finally:
        for sock in idle_sockets:
            sock.close()


@pytest.mark.parametrize("interface", ["rsgi", "asgi"])
async def test_a_handshake_that_never_completes_is_dropped_in_time(interface: str) -> None:
    """A client that sends half a request and stalls holds its socket only until
    granian's header timeout (set here to 1 s; 30 s by default), and never a slot."""
    env = {"GRANIAN_HTTP1_HEADER_READ_TIMEOUT": "1000", "WS_MAX_CONNECTIONS": "1"}
    server = start(APP, interface, env)
    try:
        stalled = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)
        stalled.sendall(b"GET /ws/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")
        started = time.monotonic()
        async with connect(f"{server.ws}/ws/echo") as ws:  # the one slot is free
            await echo_once(ws)
        # The server gives up on the stalled request: the socket is closed (after an
        # error response, if any).
        left = await asyncio.to_thread(_read_until_closed, stalled, WAIT)
        assert left, "the server never closed the stalled socket"
        assert time.monotonic() - started < 4
    finally:
        server.stop()


def _read_until_closed(sock: socket.socket, timeout: float) -> bool:
    sock.settimeout(timeout)
    try:
        while sock.recv(4096):
            pass
        return True
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    finally:
        sock.close()


async def test_rate_limit_closes_the_flooder_only(rate_server: Server) -> None:
    url = f"{rate_server.ws}/ws/echo"
    async with connect(url) as bystander, connect(url) as flooder:
        # One message over the burst, and no more: a client still sending after the
        # server's close (or whose messages the server never reads) may see its socket
        # reset before the close frame arrives, which TCP allows and no server prevents.
        for i in range(6):
            await flooder.send(f"m{i}")
        echoes = []
        with pytest.raises(ConnectionClosed) as info:
            for _ in range(7):
                echoes.append(await asyncio.wait_for(flooder.recv(), WAIT))
        assert echoes == [f"m{i}" for i in range(5)]  # the burst went through, in order
        expected = 1008 if rate_server.interface == "asgi" else 1005
        assert info.value.rcvd is not None and info.value.rcvd.code == expected
        await echo_once(bystander)
    data = await stats(rate_server)
    assert data["rate_limited"] >= 1


async def test_rate_limit_drop_policy_keeps_the_connection(drop_server: Server) -> None:
    url = f"{drop_server.ws}/ws/echo"
    async with connect(url) as ws:
        for i in range(30):
            await ws.send(f"m{i}")
        await wait_stats(drop_server, lambda d: d["rate_limited"] >= 20, WAIT)
        got = []
        while True:
            try:
                got.append(await asyncio.wait_for(ws.recv(), 0.5))
            except asyncio.TimeoutError:
                break
        # The burst went through, in order; the rest was dropped, not queued.
        assert 5 <= len(got) < 30 and got == [f"m{i}" for i in range(len(got))]
        await asyncio.sleep(0.25)  # on purpose: the bucket refills a token every 0.2 s
        await echo_once(ws, "still here")


async def test_idle_timeout_closes_silent_clients_and_heartbeats_keep_others(
    idle_server: Server,
) -> None:
    url = f"{idle_server.ws}/ws/echo"
    async with connect(url) as silent, connect(url) as talker:
        started = time.monotonic()
        ended = asyncio.ensure_future(silent.wait_closed())
        while not ended.done():
            # The framework answers the heartbeat itself; the handler never sees it.
            await talker.send("ping")
            assert await asyncio.wait_for(talker.recv(), WAIT) == "pong"
            await asyncio.wait([ended], timeout=0.3)
            assert time.monotonic() - started < 4, "the silent client was not closed"
        assert time.monotonic() - started >= 0.9
        expected = 1001 if idle_server.interface == "asgi" else 1005
        assert silent.close_code == expected
        await echo_once(talker)  # alive after more than the timeout
    data = await stats(idle_server)
    assert data["idle_closed"] >= 1


async def test_a_flood_to_a_handler_that_does_not_read_is_held_back_by_tcp(
    default_server: Server,
) -> None:
    """The server stops reading once WS_RECEIVE_QUEUE_MESSAGES are waiting: the client's
    sends block, and the server's memory does not grow with what it tries to send."""
    before = (await stats(default_server))["rss_bytes"]
    payload = "x" * (64 * 1024)
    async with connect(f"{default_server.ws}/ws/deaf", max_size=None) as ws:
        sent = 0

        async def flood() -> None:
            nonlocal sent
            for _ in range(2000):  # 125 MiB if nothing held it back
                await ws.send(payload)
                sent += 1

        task = asyncio.ensure_future(flood())
        done, _ = await asyncio.wait([task], timeout=3)
        assert not done, "125 MiB went through: nothing held the client back"
        assert sent < 400, sent  # a few MiB: the queue, and the sockets' buffers
        grown = (await stats(default_server))["rss_bytes"] - before
        assert grown < 48 * 1024 * 1024, grown
        task.cancel()
        ws.transport.abort()


async def test_counters_and_prometheus_text(default_server: Server) -> None:
    before = await stats(default_server)
    async with connect(f"{default_server.ws}/ws/echo") as ws:
        await echo_once(ws, "12345")
    after = await wait_stats(
        default_server, lambda d: d["open_connections"] == before["open_connections"], WAIT
    )
    assert after["accepted"] == before["accepted"] + 1
    assert after["messages_in"] >= before["messages_in"] + 1
    assert after["bytes_out"] >= before["bytes_out"] + 5
    closes = after["closes"]
    assert sum(closes.values()) >= 1
    text = (await http_request(default_server.port, "GET", "/metrics")).body.decode()
    assert "# TYPE gobstopper_accepted_total counter" in text
    assert f"gobstopper_accepted_total {after['accepted']}" in text
    assert "gobstopper_open_connections " in text
