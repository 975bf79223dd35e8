"""The Python client in-process (``AsyncTestClient.rpc``), against the RPC example: the
real ``Client`` over an in-process link, so calls, streams, events, channels and
refusals behave as over the network."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from examples.rpc import app
from gobstopper import Gobstopper, HTTPError, WebSocket
from gobstopper.client import CallError, Client, Disconnect
from gobstopper.messages import RPC
from gobstopper.testing import AsyncTestClient, RPCTestClient, WebSocketDenied


async def test_calls_streams_events_and_channels() -> None:
    async with AsyncTestClient(app) as client, client.rpc("/rpc") as rpc:
        assert isinstance(rpc, Client)
        assert await rpc.call("add", 2, 3) == 5
        with pytest.raises(CallError, match="division by zero"):
            await rpc.call("divide", 1, 0)
        assert [i async for i in rpc.stream("count", 3)] == [0, 1, 2]
        sums: asyncio.Queue[Any] = asyncio.Queue()
        rpc.on("sum_result", lambda data, sender: sums.put_nowait(data))
        await rpc.notify("sum_event", 1, 2, 3)
        assert await asyncio.wait_for(sums.get(), 5) == 6
        async with await rpc.subscribe("news.*") as news:
            await rpc.call("announce", "news.sport", "goal")
            message = await news.get(timeout=5)
            assert (message.channel, message.data) == ("news.sport", "goal")


async def test_two_clients_in_one_room() -> None:
    async with AsyncTestClient(app) as client, client.rpc("/rpc") as ann, client.rpc("/rpc") as ben:
        heard: asyncio.Queue[Any] = asyncio.Queue()
        ben.on("said", lambda data, sender: heard.put_nowait(data))
        await ann.emit("join", {"room": "lobby"}, ack=True)
        await ben.emit("join", {"room": "lobby"}, ack=True)
        await ann.emit("say", {"room": "lobby", "text": "hi"}, ack=True)
        said = await asyncio.wait_for(heard.get(), 5)
        assert said == {"id": ann.id, "text": "hi"}


async def test_msgpack_travels_in_process_too() -> None:
    async with AsyncTestClient(app) as client, client.rpc("/rpc", encoding="msgpack") as rpc:
        assert await rpc.call("add", 1.5, 1) == 2.5


guarded = Gobstopper(environ={})
guarded_rpc = RPC(guarded.manager)


def bearer(ws: WebSocket) -> None:
    if ws.headers.get("authorization") != "Bearer good":
        raise HTTPError(401, "who are you?")


@guarded_rpc.method()
async def ping() -> str:
    return "pong"


@guarded.websocket("/rpc", auth=bearer)
async def guarded_endpoint(ws: WebSocket) -> None:
    await guarded_rpc.serve(ws)


async def test_credentials_and_headers_reach_the_auth_hook() -> None:
    async with AsyncTestClient(guarded) as client:
        async with client.rpc("/rpc", credentials=lambda: "good") as rpc:
            assert await rpc.call("ping") == "pong"
        async with client.rpc("/rpc", headers={"authorization": "Bearer good"}) as rpc:
            assert await rpc.call("ping") == "pong"


async def test_a_refusal_raises_at_once_with_its_status() -> None:
    async with AsyncTestClient(guarded, timeout=30) as client:
        rpc = client.rpc("/rpc", credentials=lambda: "bad")
        assert isinstance(rpc, RPCTestClient)
        started = time.monotonic()
        with pytest.raises(WebSocketDenied) as refused:
            async with rpc:
                pass
        assert refused.value.status == 401
        assert time.monotonic() - started < 5  # not after the 30 s timeout


async def test_a_dropped_connection_is_reconnected_with_its_subscriptions() -> None:
    async with (
        AsyncTestClient(app) as client,
        client.rpc("/rpc", backoff=0.01) as rpc,
        await rpc.subscribe("news.*") as news,
    ):
        await rpc.sessions[-1].close(1006)  # the connection drops
        await rpc.ready(2)  # the second connection, subscriptions renewed
        assert len(rpc.sessions) == 2 and rpc.sessions[0].close_code == 1006
        await rpc.call("announce", "news.tech", "renewed")
        assert (await news.get(timeout=5)).data == "renewed"


async def test_a_client_left_open_is_closed_with_the_test_client() -> None:
    async with AsyncTestClient(app, timeout=2) as client:
        rpc = client.rpc("/rpc", backoff=0.01)
        await rpc.connect()  # and never closed by the test
        assert await rpc.call("add", 1, 2) == 3
    with pytest.raises(ConnectionError, match="client closed"):
        await asyncio.wait_for(rpc.call("add", 1, 2), 5)
    assert len(rpc.sessions) == 1  # no connection dialled after the exit


quiet = Gobstopper(environ={})
quiet_rpc = RPC(quiet.manager)


@quiet_rpc.method()
async def slow() -> str:
    # The app is slow on purpose: the connection stays silent longer than a receive's
    # timeout, which must not drop the Python client's link.
    await asyncio.sleep(0.6)
    return "done"


@quiet.websocket("/rpc")
async def quiet_endpoint(ws: WebSocket) -> None:
    await quiet_rpc.serve(ws)


async def test_a_silence_longer_than_the_timeout_keeps_the_clients_link() -> None:
    async with AsyncTestClient(quiet, timeout=0.2) as client, client.rpc("/rpc", timeout=5) as rpc:
        assert await rpc.call("slow") == "done"
        assert len(rpc.sessions) == 1


closing = Gobstopper(environ={})
closing_rpc = RPC(closing.manager)
closing_count = {"connections": 0}


@closing.websocket("/rpc")
async def closing_endpoint(ws: WebSocket) -> None:
    closing_count["connections"] += 1
    if closing_count["connections"] == 2:  # the first reconnection is sent away
        await ws.accept()
        await ws.close(4003, "go away")
        return
    await closing_rpc.serve(ws)


async def test_a_drop_in_process_gives_its_close_code_to_on_close() -> None:
    closing_count["connections"] = 0
    seen: list[Disconnect] = []
    two = asyncio.Event()

    def dropped(event: Disconnect) -> None:
        seen.append(event)
        if len(seen) == 2:
            two.set()

    options: dict[str, Any] = {"backoff": 0.01, "max_backoff": 0.02, "on_close": dropped}
    async with AsyncTestClient(closing, timeout=2) as client, client.rpc("/rpc", **options) as rpc:
        await rpc.sessions[-1].close(1012, "restart")
        await asyncio.wait_for(two.wait(), 2)
        await rpc.ready(3)
    assert [e.code for e in seen] == [1012, 4003]
    assert seen[1].cause == "the server closed the connection with code 4003: go away"
