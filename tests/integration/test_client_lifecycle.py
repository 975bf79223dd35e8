"""The Python client's status, hooks and error messages against a real granian: a server
restart seen as reconnecting then open, a closed port and a refused handshake named in
``ConnectTimeout``, and the example that prints the status."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest

from gobstopper.client import Client, ClientTimeout, ConnectTimeout, Disconnect, Status

from .servers import ROOT, free_port, start

EDGE = "tests.apps.messages:app"
WAIT = 10


class Hooks:
    """Hooks that record what they saw and set an event per kind."""

    def __init__(self) -> None:
        self.statuses: list[Status] = []
        self.opened: list[Any] = []
        self.closed: list[Disconnect] = []
        self.open_again = asyncio.Event()
        self.dropped = asyncio.Event()

    def on_status(self, status: Status, close_reason: Any) -> None:
        self.statuses.append(status)

    async def on_open(self, info: Any) -> None:
        self.opened.append(info)
        if len(self.opened) > 1:
            self.open_again.set()

    def on_close(self, event: Disconnect) -> None:
        self.closed.append(event)
        self.dropped.set()


@pytest.mark.parametrize("interface", ["rsgi", "asgi"])
async def test_a_restart_is_seen_as_reconnecting_then_open(interface: str) -> None:
    server = start(EDGE, interface)
    hooks = Hooks()
    client = Client(
        f"{server.ws}/rpc",
        timeout=WAIT,
        backoff=0.05,
        max_backoff=0.2,
        on_status=hooks.on_status,
        on_open=hooks.on_open,
        on_close=hooks.on_close,
    )
    try:
        await client.connect()
        assert client.status is Status.OPEN and client.connected
        news = await client.subscribe("n.a")
        first_id = client.id

        port = server.port
        await asyncio.to_thread(server.stop)  # the client's loop runs meanwhile
        await client.wait_status(Status.RECONNECTING, timeout=WAIT)
        await asyncio.wait_for(hooks.dropped.wait(), WAIT)
        assert not client.connected and client.id is None
        assert hooks.closed[0].attempt == 1 and hooks.closed[0].delay > 0
        with pytest.raises(ClientTimeout) as info:  # the subscriber learns why it waits
            await news.get(0.05)
        assert "when the wait ended the client was reconnecting" in str(info.value)
        assert info.value.status == "reconnecting"

        server = await asyncio.to_thread(start, EDGE, interface, port=port)
        await client.wait_open(WAIT)
        await asyncio.wait_for(hooks.open_again.wait(), WAIT)
        assert hooks.opened[1]["id"] == client.id != first_id
        assert hooks.statuses[:3] == [Status.CONNECTING, Status.OPEN, Status.RECONNECTING]
        assert hooks.statuses[-1] is Status.OPEN
        await client.publish("n.a", "after", echo=True)
        assert (await news.get(WAIT)).data == "after"  # renewed by itself
    finally:
        await client.close()
        server.stop()
    assert hooks.statuses[-1] is Status.CLOSED


async def test_no_server_on_the_port_is_named_in_the_error() -> None:
    url = f"ws://127.0.0.1:{free_port()}/rpc"
    client = Client(url, timeout=0.5, backoff=0.05, max_backoff=0.1)
    with pytest.raises(ConnectTimeout) as info:
        await client.connect()
    text = str(info.value)
    assert text.startswith(f"no connection to {url} within 0.5s: ")
    assert info.value.attempts >= 2 and f"{info.value.attempts} attempts failed" in text
    assert "Connect call failed" in text or "refused" in text.lower()
    assert client.status is Status.CLOSED


async def test_a_refused_handshake_gives_its_http_status() -> None:
    server = start(EDGE, "rsgi")
    try:
        url = f"{server.ws}/rpc?id=ann"
        async with Client(url, timeout=WAIT):  # holds the id: the next gets HTTP 409
            second = Client(url, timeout=0.5, backoff=0.05, max_backoff=0.1)
            with pytest.raises(ConnectTimeout) as info:
                await second.connect()
        assert info.value.last_error is not None
        assert "the server refused the handshake: HTTP 409" in info.value.last_error
        assert info.value.last_error in str(info.value)
    finally:
        server.stop()


async def test_the_client_example_prints_its_status() -> None:
    server = start("examples.rpc:app", "rsgi")
    try:
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "examples.rpc_client", f"{server.ws}/rpc", "--calls", "2"),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 0, err.decode()
        lines = out.decode().splitlines()
        assert lines[0] == "status: connecting" and lines[1] == "status: open"
        assert lines[2].startswith("open as ")
        assert "add(0, 1) = 1.0" in lines and "add(1, 1) = 2.0" in lines
        assert lines[-1] == "status: closed"
    finally:
        server.stop()

    closed = f"ws://127.0.0.1:{free_port()}/rpc"
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "examples.rpc_client", closed, "--timeout", "0.5"),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 1
    assert f"error: no connection to {closed} within 0.5s" in err.decode()


async def test_the_client_example_goes_on_across_a_server_restart() -> None:
    server = start("examples.rpc:app", "rsgi")
    port = server.port
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "examples.rpc_client", f"{server.ws}/rpc", "--calls", "3"),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    seen: list[str] = []

    async def until(wanted: str) -> None:
        assert process.stdout is not None
        while not seen or seen[-1] != wanted:
            raw = await asyncio.wait_for(process.stdout.readline(), 30)
            assert raw, f"the example ended before {wanted!r}: {seen}"
            seen.append(raw.decode().rstrip("\n"))

    try:
        await until("add(0, 1) = 1.0")
        await asyncio.to_thread(server.stop)  # between two calls, or during one
        await until("status: reconnecting")
        server = await asyncio.to_thread(start, "examples.rpc:app", "rsgi", port=port)
        out, err = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 0, err.decode()
        seen += out.decode().splitlines()
        assert "add(2, 1) = 3.0" in seen  # it went on with the new connection
        assert seen[-1] == "status: closed"
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        server.stop()
