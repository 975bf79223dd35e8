"""The Python client against the JSON-RPC example under a real granian: calls, typed
errors, timeouts, and reconnection by itself after the server restarts."""

from __future__ import annotations

import asyncio

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
