"""The Python client against the JSON-RPC example under a real granian: calls, typed
errors, timeouts, and reconnection by itself after the server restarts."""

from __future__ import annotations

import asyncio
import logging

import pytest

from gobstopper.client import CallError, Client

from .servers import start

APP = "examples.rpc:app"


@pytest.mark.parametrize("interface", ["rsgi", "asgi"])
async def test_calls_errors_and_reconnection(interface: str) -> None:
    server = start(APP, interface)
    try:
        async with Client(f"{server.ws}/rpc", timeout=10, backoff=0.05) as client:
            assert await client.call("add", 2, 3) == 5
            assert await client.call("add", a=0.5, b=0.25) == 0.75
            assert await asyncio.gather(*(client.call("add", i, i) for i in range(20))) == [
                2 * i for i in range(20)
            ]
            with pytest.raises(CallError) as info:
                await client.call("divide", 1, 0)
            assert (info.value.code, info.value.message, info.value.data) == (
                4000,
                "division by zero",
                {"a": 1},
            )
            with pytest.raises(CallError) as info:
                await client.call("no_such_method")
            assert info.value.code == -32601
            with pytest.raises(CallError) as info:
                await client.call("add", 1, "x")
            assert info.value.code == -32602
            await client.notify("add", 1, 1)  # no answer, and nothing breaks

            # The server restarts on its port: the next calls wait for the client's new
            # connection, made by itself with backoff.
            port = server.port
            await asyncio.to_thread(server.stop)  # the client's loop runs meanwhile
            server = await asyncio.to_thread(start, APP, interface, port=port)
            assert await client.call("add", 40, 2) == 42
            assert client.connections == 2
    finally:
        server.stop()


async def test_a_call_fails_cleanly_when_nobody_answers() -> None:
    server = start(APP, "rsgi")
    try:
        client = Client(f"{server.ws}/rpc", timeout=1, backoff=0.05)
        await client.connect()
        server.stop()  # gone: the call waits for a connection that never comes
        with pytest.raises((asyncio.TimeoutError, ConnectionError)):
            await client.call("add", 1, 2)
        await client.close()
    finally:
        server.stop()


EDGE = "tests.apps.messages:app"


class Refusals(logging.Handler):
    """Sets an event when the client logs a refused or lost connection."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "refused" in record.getMessage():
            self.seen.set()


async def test_an_http_refusal_does_not_stop_reconnecting() -> None:
    server = start(EDGE, "rsgi")
    refusals = Refusals()
    logger = logging.getLogger("gobstopper.client")
    logger.addHandler(refusals)
    logger.setLevel(logging.INFO)
    try:
        url = f"{server.ws}/rpc?id=ann"
        first = Client(url, timeout=10)
        await first.connect()
        second = Client(url, timeout=10, backoff=0.05, max_backoff=0.2)
        connecting = asyncio.ensure_future(second.connect())
        # The id is taken: the server answers 409, and the client keeps trying.
        await asyncio.wait_for(refusals.seen.wait(), 10)
        assert not connecting.done()
        await first.close()
        await connecting  # in, once the id is free
        assert second.id == "ann"
        assert await second.call("nap", 0) == 0
        await second.close()
    finally:
        logger.removeHandler(refusals)
        server.stop()


async def test_close_and_a_failed_connect_stop_everything() -> None:
    server = start(EDGE, "rsgi")
    try:
        client = Client(f"{server.ws}/rpc", timeout=10, backoff=0.05)
        await client.connect()
        port = server.port
        await asyncio.to_thread(server.stop)
        waiting = asyncio.ensure_future(client.call("nap", 0))  # waits for a connection
        await client.close()
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(waiting, 2)  # at once, not after the call's timeout

        nobody = Client(f"ws://127.0.0.1:{port}/rpc", timeout=0.3, backoff=0.05)
        with pytest.raises(asyncio.TimeoutError):
            await nobody.connect()
        with pytest.raises(ConnectionError):  # closed: it no longer tries
            await nobody.call("nap", 0)
    finally:
        server.stop()


async def test_concurrent_subscriptions_to_one_pattern_share_the_answer() -> None:
    server = start(EDGE, "rsgi")
    try:
        async with Client(f"{server.ws}/rpc", timeout=10) as client:
            refused = await asyncio.gather(
                client.subscribe("secret.*"), client.subscribe("secret.*"), return_exceptions=True
            )
            assert [type(r) for r in refused] == [CallError, CallError]
            both = await asyncio.gather(client.subscribe("n.*"), client.subscribe("n.*"))
            assert (await client.call("rpc.info"))["subscriptions"] == ["n.*"]
            await client.publish("n.a", 1, echo=True)
            assert [(await s.get(10)).data for s in both] == [1, 1]
            await both[0].close()  # the other still holds the pattern
            assert (await client.call("rpc.info"))["subscriptions"] == ["n.*"]
            await both[1].close()
            assert (await client.call("rpc.info"))["subscriptions"] == []
    finally:
        server.stop()
